//! Fills a Switchyard data folder or PostgreSQL database with a large history, for the
//! large-database mode of `bench/chatkit/run.sh`: by default 50,000 threads of 10 turns
//! (1,000,000 items, 500,000 runs with their events) spread over 200 users.
//!
//! Every thread starts with a real ChatKit turn (`threads.create` through the server's own
//! router and engine, the model answering in process), so threads, items, runs, events,
//! steps and usage have the shapes the server writes. Its later turns are written through
//! the store (`insert_chat_item`, `insert_run`) as copies of that first turn with new ids,
//! which is what makes a million items take minutes rather than hours.
//!
//! ```text
//! cargo run --release -p fill-bench -- --data-dir target/bench-chatkit/template
//! cargo run --release -p fill-bench -- --database-url postgres://postgres@127.0.0.1:5432/filled
//!     [--threads 50000] [--turns 10] [--users 200] [--concurrency 8]
//! ```
//!
//! The folder or database is expected to be prepared already (the bench's administrator,
//! the default workflow served by ChatKit); the fill adds users and their threads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use async_trait::async_trait;
use axum::{
    body::Body,
    http::{Request, header},
};
use conversation::{Order, ThreadItem};
use domain::{
    chat::{self, PageRequest},
    llm::{ChatRequest, Completion, Embeddings, EventStream, LlmClient, LlmError, StreamEvent},
    models::{ProviderCredentials, RemoteModel, Usage},
    runs::{Event, Run, RunFilter},
    users::{self, CreateUser},
};
use http_body_util::BodyExt;
use serde_json::json;
use server::{app::App, config::Config};
use tower::ServiceExt;

/// What the in-process model answers: about as long as the bench's fake model's answer.
const ANSWER: &str = "Here is a short answer to your question, written the way a helpful \
    assistant would write it, with enough words to look like a real reply in a chat.";

struct Settings {
    data_dir: Option<String>,
    database_url: Option<String>,
    threads: usize,
    turns: usize,
    users: usize,
    concurrency: usize,
}

fn settings() -> Settings {
    let mut s = Settings {
        data_dir: None,
        database_url: None,
        threads: 50_000,
        turns: 10,
        users: 200,
        concurrency: 8,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = || -> usize {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{} takes a number", args[i]))
        };
        match args[i].as_str() {
            "--data-dir" => s.data_dir = Some(value.clone()),
            "--database-url" => s.database_url = Some(value.clone()),
            "--threads" => s.threads = number(),
            "--turns" => s.turns = number().max(1),
            "--users" => s.users = number().max(1),
            "--concurrency" => s.concurrency = number().max(1),
            other => panic!("unknown argument {other}; see the file's header"),
        }
        i += 2;
    }
    assert!(
        s.data_dir.is_some() || s.database_url.is_some(),
        "give --data-dir or --database-url"
    );
    s
}

/// Answers every chat with [`ANSWER`], streamed in a few pieces.
struct Echo;

#[async_trait]
impl LlmClient for Echo {
    async fn stream(
        &self,
        _: &ProviderCredentials,
        _: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        let mut events: Vec<Result<StreamEvent, LlmError>> = ANSWER
            .split_inclusive(", ")
            .map(|piece| Ok(StreamEvent::TextDelta(piece.to_string())))
            .collect();
        events.push(Ok(StreamEvent::Completed(Completion {
            text: ANSWER.into(),
            usage: Usage {
                input_tokens: 60,
                output_tokens: 30,
                ..Usage::default()
            },
            finish_reason: Some("stop".into()),
            ..Completion::default()
        })));
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    async fn list_models(&self, _: &ProviderCredentials) -> Result<Vec<RemoteModel>, LlmError> {
        Ok(Vec::new())
    }

    async fn embed(
        &self,
        _: &ProviderCredentials,
        _: &str,
        _: &[String],
        _: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        Err(LlmError::Misconfigured("the fill does not embed".into()))
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
            "the fill does not transcribe".into(),
        ))
    }
}

/// A real first turn: `threads.create` through the router; returns the thread's id.
async fn first_turn(router: &axum::Router, token: &str, n: usize) -> String {
    let body = json!({
        "type": "threads.create",
        "params": {"input": {
            "content": [{"type": "input_text", "text": format!("Question number {n}: how do I reset my password?")}],
            "attachments": [], "inference_options": {}
        }}
    });
    let request = Request::post("/api/chatkit")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(status.is_success(), "threads.create: {status} {text}");
    let marker = "\"thread\":{\"id\":\"";
    let start = text.find(marker).expect("the stream names its thread") + marker.len();
    text[start..].split('"').next().unwrap().to_string()
}

/// The later turns of a thread, as copies of its first one written through the store.
async fn later_turns(app: &App, thread_id: &str, turns: usize) {
    let store = &app.services.store;
    let page = PageRequest {
        limit: 10,
        order: Order::Asc,
        after: None,
    };
    let (items, _) = store
        .list_chat_items(thread_id, &page, false)
        .await
        .expect("the thread's items");
    let runs = store
        .list_runs(&RunFilter {
            thread_id: Some(thread_id.into()),
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .expect("the thread's run");
    let run = runs.first().expect("the first turn's run");
    let events = store.run_events(&run.id, 0).await.expect("its events");
    for _ in 1..turns {
        let mut first_new: Option<String> = None;
        for item in &items {
            let now = chrono::Utc::now();
            let copy = ThreadItem {
                id: chat::new_id("msg"),
                thread_id: thread_id.into(),
                created_at: now,
                body: item.body.clone(),
            };
            first_new.get_or_insert_with(|| copy.id.clone());
            store.insert_chat_item(&copy).await.expect("an item");
        }
        let now = chrono::Utc::now();
        let copy = Run {
            id: chat::new_id("run"),
            history_before: first_new,
            created_at: now,
            updated_at: now,
            finished_at: Some(now),
            ..run.clone()
        };
        let copied: Vec<Event> = events
            .iter()
            .map(|event| Event {
                at: now,
                ..event.clone()
            })
            .collect();
        store.insert_run(&copy, &copied).await.expect("a run");
    }
}

#[tokio::main]
async fn main() {
    let s = settings();
    let mut config = Config::default();
    if let Some(dir) = &s.data_dir {
        config.data_dir = dir.into();
    }
    if let Some(url) = &s.database_url {
        config.database.url = Some(domain::secret::Secret::new(url.clone()));
    }
    config.database.max_connections = (s.concurrency as u32 + 2).max(4);
    let mut app = App::build(config).await.expect("the app builds");
    app.services.llm = Arc::new(Echo);
    let router = app.router();

    let started = Instant::now();
    let mut tokens = Vec::with_capacity(s.users);
    for u in 0..s.users {
        let email = format!("learner{u}@fill.example.com");
        let user = match users::provision(
            &app.services,
            CreateUser {
                email: email.clone(),
                password: "fill-password".into(),
                display_name: Some(format!("Learner {u}")),
                is_admin: false,
            },
        )
        .await
        {
            Ok(user) => user,
            Err(_) => {
                app.services
                    .store
                    .credentials_by_email(&email)
                    .await
                    .expect("the user")
                    .expect("an existing learner")
                    .user
            }
        };
        tokens.push(app.services.auth.issue_token(&user));
    }
    eprintln!("{} users ready in {:?}", s.users, started.elapsed());

    let app = Arc::new(app);
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..s.concurrency {
        let (app, router, tokens, next, done) = (
            app.clone(),
            router.clone(),
            tokens.clone(),
            next.clone(),
            done.clone(),
        );
        let (threads, turns) = (s.threads, s.turns);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= threads {
                    break;
                }
                let thread = first_turn(&router, &tokens[n % tokens.len()], n).await;
                later_turns(&app, &thread, turns).await;
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 1000 == 0 {
                    eprintln!(
                        "{finished} threads in {:.0?} ({:.0} threads/s)",
                        started.elapsed(),
                        finished as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a fill worker");
    }
    let stats = app.services.store.storage_stats().await.expect("the stats");
    println!(
        "{}",
        json!({
            "threads": stats.threads,
            "thread_items": stats.thread_items,
            "runs": stats.runs,
            "run_events": stats.run_events,
            "run_steps": stats.run_steps,
            "usage_records": stats.usage_records,
            "database_bytes": stats.database_bytes,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
}
