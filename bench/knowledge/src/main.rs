//! Knowledge-base benchmark: loads synthetic documents (100,000 chunks of 384 dimensions by
//! default) into a store on SQLite and on PostgreSQL, through the real ingestion path with
//! an in-process embedder, and measures ingestion throughput and hybrid top-10 query
//! latency (p50, p99) at 10k chunks and at the full size.
//!
//! `cargo run --release -p knowledge-bench -- [CHUNKS] [sqlite|postgres|both]`; and
//! `cargo run --release -p knowledge-bench -- local [MODELS_DIR]` times the local
//! embedding model (all-MiniLM-L6-v2) alone.
//! PostgreSQL (with pgvector) is reached at `BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a scratch database is created and
//! dropped there.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use domain::{
    knowledge::{self, NewVectorStore, search},
    llm::{ChatRequest, Embeddings, EventStream, LlmClient, LlmError},
    models::{
        self, ModelInput, ProviderCredentials, ProviderInput, ProviderKind, RemoteModel, Usage,
    },
    users::{self, CreateUser},
};
use serde_json::json;
use server::{app::App, config::Config};
use sqlx::Connection;

const DIMS: usize = 384;
const CHUNKS_PER_DOC: usize = 100;
const WORDS_PER_CHUNK: usize = 60;
const TOPICS: usize = 64;
const QUERIES: usize = 300;

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pronounceable made-up words, so full text has a real vocabulary.
fn vocabulary(n: usize, rng: &mut Rng) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fi", "go", "ha", "ju", "pe",
        "qui", "ro", "su", "te", "xa", "yo", "ze", "bra", "cle", "dro", "fla", "gri", "plo",
    ];
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let len = 2 + rng.below(3);
        let word: String = (0..len)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// Chunks about topics: most words from the topic's own vocabulary, the rest common.
struct Corpus {
    common: Vec<String>,
    topics: Vec<Vec<String>>,
    rng: Rng,
}

impl Corpus {
    fn new() -> Corpus {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let all = vocabulary(6000, &mut rng);
        let common = all[..800].to_vec();
        let topics = (0..TOPICS)
            .map(|t| all[800 + t * 80..800 + (t + 1) * 80].to_vec())
            .collect();
        Corpus {
            common,
            topics,
            rng,
        }
    }

    fn chunk(&mut self, topic: usize) -> String {
        (0..WORDS_PER_CHUNK)
            .map(|_| {
                if self.rng.below(10) < 6 {
                    let words = &self.topics[topic];
                    words[self.rng.below(words.len())].as_str()
                } else {
                    // Common words, Zipf-like: the first ones far more often.
                    let r = self.rng.below(self.common.len());
                    let r = r * r / self.common.len();
                    self.common[r].as_str()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn query(&mut self) -> String {
        let topic = self.rng.below(TOPICS);
        let words = &self.topics[topic];
        (0..3)
            .map(|_| words[self.rng.below(words.len())].clone())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// An in-process embedder: each word adds ±1 to a hashed dimension (texts sharing words
/// point the same way). Stands in for a local model so the benchmark measures the store.
struct LocalEmbedder;

fn embed_text(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    for word in text.split_whitespace() {
        let mut h: u64 = 1469598103934665603;
        for b in word.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
        }
        v[(h % DIMS as u64) as usize] += if (h >> 32) & 1 == 0 { 1.0 } else { -1.0 };
    }
    v
}

#[async_trait]
impl LlmClient for LocalEmbedder {
    async fn stream(
        &self,
        _: &ProviderCredentials,
        _: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        Err(LlmError::Misconfigured(
            "the benchmark embedder does not chat".into(),
        ))
    }
    async fn list_models(&self, _: &ProviderCredentials) -> Result<Vec<RemoteModel>, LlmError> {
        Ok(Vec::new())
    }
    async fn embed(
        &self,
        _: &ProviderCredentials,
        _: &str,
        inputs: &[String],
        _: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        Ok(Embeddings {
            vectors: inputs.iter().map(|t| embed_text(t)).collect(),
            usage: Usage::default(),
        })
    }
    async fn transcribe(
        &self,
        _: &ProviderCredentials,
        _: &str,
        _: Vec<u8>,
        _: &str,
        _: Option<&str>,
    ) -> Result<String, LlmError> {
        Err(LlmError::Misconfigured(
            "the benchmark embedder does not transcribe".into(),
        ))
    }
}

struct Latency {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

async fn queries(app: &App, admin: &users::User, corpus: &mut Corpus) -> Latency {
    let mut times = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES + 20 {
        let req = search::SearchRequest::new(corpus.query(), 10);
        let started = Instant::now();
        let found = search::search_chunks(&app.services, admin, "bench", &req, None)
            .await
            .expect("the search runs");
        let took = started.elapsed();
        assert!(found.semantic, "the search is hybrid");
        assert!(!found.results.is_empty(), "the search finds chunks");
        if i >= 20 {
            times.push(took);
        }
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    Latency {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn run(backend: &str, url: String, total: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.database.url = Some(domain::secret::Secret::new(url));
    config.knowledge.workers = 0;
    let mut app = App::build(config).await.expect("the app builds");
    app.services.llm = Arc::new(LocalEmbedder);
    let admin = users::provision(
        &app.services,
        CreateUser {
            email: "bench@example.com".into(),
            password: "bench-password".into(),
            display_name: None,
            is_admin: true,
        },
    )
    .await
    .expect("an admin");
    let administrator = domain::Principal::user(admin.clone());
    let provider = models::create_provider(
        &app.services,
        &administrator,
        ProviderInput {
            kind: Some(ProviderKind::OpenAiCompatible),
            label: Some("local".into()),
            api_base: Some("http://127.0.0.1:9/v1".into()),
            ..ProviderInput::default()
        },
    )
    .await
    .expect("a provider");
    let model = models::create_model(
        &app.services,
        &administrator,
        ModelInput {
            provider_id: Some(provider.id),
            name: Some("local-embed".into()),
            ..ModelInput::default()
        },
    )
    .await
    .expect("a model");
    knowledge::create_store(
        &app.services,
        &admin,
        NewVectorStore {
            slug: "bench".into(),
            title: None,
            description: None,
            metadata: json!({}),
            embedding_model_id: Some(model.id),
            chunk_tokens: knowledge::DEFAULT_CHUNK_TOKENS,
            chunk_overlap: knowledge::DEFAULT_CHUNK_OVERLAP,
            protected: false,
        },
    )
    .await
    .expect("a store");

    let mut corpus = Corpus::new();
    let mut rows = Vec::new();
    let mut loaded = 0;
    let mut ingest_time = Duration::ZERO;
    for checkpoint in [10_000.min(total), total] {
        let started = Instant::now();
        while loaded < checkpoint {
            let n = CHUNKS_PER_DOC.min(checkpoint - loaded);
            let topic = (loaded / CHUNKS_PER_DOC) % TOPICS;
            let texts: Vec<String> = (0..n).map(|_| corpus.chunk(topic)).collect();
            knowledge::ingest_chunks(
                &app.services,
                &admin,
                "bench",
                &format!("doc-{loaded}"),
                None,
                texts,
                json!({"topic": topic}),
            )
            .await
            .expect("the document ingests");
            loaded += n;
        }
        ingest_time += started.elapsed();
        let latency = queries(&app, &admin, &mut corpus).await;
        rows.push(format!(
            "| {backend} | {loaded} | {} | {} | {} | {:.0} |",
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.mean),
            loaded as f64 / ingest_time.as_secs_f64(),
        ));
        eprintln!("{}", rows.last().unwrap());
        if checkpoint == total {
            break;
        }
    }
    app.db.close().await;
    rows
}

/// The local model alone: chunks of about 250 tokens embedded per second, and the latency
/// of embedding one short query (what a search adds when its store uses the local model).
async fn local_model(dir: &str) {
    let models = local_models::LocalModels::new(dir);
    let name = "all-MiniLM-L6-v2";
    let mut rng = Rng(7);
    let words = vocabulary(6_000, &mut rng);
    let chunk = |rng: &mut Rng| {
        (0..WORDS_PER_CHUNK * 3)
            .map(|_| words[rng.below(words.len())].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let warm = models
        .encode(name, &[chunk(&mut rng)])
        .await
        .expect("the local model loads (scripts/fetch-local-model.sh)");
    assert_eq!(warm.vectors[0].len(), DIMS);
    let batch: Vec<String> = (0..256).map(|_| chunk(&mut rng)).collect();
    let started = Instant::now();
    let encoded = models.encode(name, &batch).await.expect("embeds");
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for i in 0..QUERIES {
        let query = format!(
            "{} {} {}",
            words[i % words.len()],
            words[(i * 7) % words.len()],
            words[(i * 13) % words.len()]
        );
        let started = Instant::now();
        models.encode(name, &[query]).await.expect("embeds");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| local model | chunks/s (256 chunks, {} tokens) | query p50 ms | p99 ms |",
        encoded.tokens
    );
    println!("|---|---|---|---|");
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} |",
        batch.len() as f64 / elapsed,
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 99 / 100]),
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    if let Some(mode) = std::env::args().nth(1)
        && mode == "local"
    {
        let dir = std::env::args()
            .nth(2)
            .unwrap_or_else(|| "data/models".into());
        local_model(&dir).await;
        return;
    }
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let which = args.next().unwrap_or_else(|| "both".into());
    let mut rows = Vec::new();
    if which == "sqlite" || which == "both" {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        rows.extend(run("sqlite", url, total).await);
    }
    if which == "postgres" || which == "both" {
        let admin_url = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("knowledge_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("a scratch database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        rows.extend(run("postgres", format!("{base}/{name}"), total).await);
        // BENCH_KEEP=1 keeps the scratch database, to look at its plans.
        if std::env::var_os("BENCH_KEEP").is_none() {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        } else {
            eprintln!("kept the database {name}");
        }
    }
    println!(
        "| backend | chunks | hybrid top-10 p50 ms | p99 ms | mean ms | ingestion chunks/s (cumulative) |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
