//! Hybrid search: nearest vectors and full-text matches, fused by reciprocal rank (or the
//! seed's weighted scores), with metadata filters and per-document grouping.
//!
//! Both candidate lists come from the database's own indexes (HNSW or `vec0` for vectors,
//! `tsvector` or FTS5 for text), each `depth` long; only the candidates are scored here.
//! Filters select documents first, and a search restricted to documents scores their
//! chunks exactly instead of through the vector index.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{ChunkHit, KnowledgeError, KnowledgeResult, VectorStore, embed, store_by_slug};
use crate::{Services, users::User};

/// The constant of reciprocal rank fusion: `1 / (K + rank)`.
const RRF_K: f64 = 60.0;
pub const MAX_TOP_K: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// Reciprocal rank fusion of the two lists (the default).
    Rrf,
    /// The seed's weighting: `(w_d·(dense+1)/2 + w_s·bm25/max_bm25) / (w_d + w_s)`.
    Weighted,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: usize,
    pub metadata_filters: Option<Map<String, Value>>,
    pub dense_weight: Option<f64>,
    pub sparse_weight: Option<f64>,
    pub chunks_per_document: Option<usize>,
    /// `None`: weighted when weights are given, else reciprocal rank fusion.
    pub ranking: Option<Ranking>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>, top_k: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            top_k,
            metadata_filters: None,
            dense_weight: None,
            sparse_weight: None,
            chunks_per_document: None,
            ranking: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub chunk: ChunkHit,
    /// Cosine similarity to the query; `None` without semantic search.
    pub dense_score: Option<f64>,
    /// Full-text relevance (BM25 on SQLite, `ts_rank_cd` on PostgreSQL); `None` when the
    /// chunk has none of the query's words.
    pub bm25_score: Option<f64>,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocumentHit {
    pub doc_id: String,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub score: f64,
    pub metadata: Value,
    pub matches: Vec<SearchHit>,
}

/// What a search found, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<T> {
    pub results: Vec<T>,
    /// Whether vectors took part (`false`: full text only).
    pub semantic: bool,
    /// Why semantic search did not run, when it did not.
    pub notice: Option<String>,
}

struct Candidate {
    dense: Option<f64>,
    dense_rank: Option<usize>,
    text: Option<f64>,
    text_rank: Option<usize>,
}

fn check(req: &SearchRequest) -> KnowledgeResult<()> {
    if req.query.trim().is_empty() {
        return Err(KnowledgeError::Invalid("query must not be empty".into()));
    }
    if !(1..=MAX_TOP_K).contains(&req.top_k) {
        return Err(KnowledgeError::Invalid(format!(
            "top_k must be between 1 and {MAX_TOP_K}"
        )));
    }
    if let Some(n) = req.chunks_per_document
        && !(1..=MAX_TOP_K).contains(&n)
    {
        return Err(KnowledgeError::Invalid(format!(
            "chunks_per_document must be between 1 and {MAX_TOP_K}"
        )));
    }
    for weight in [req.dense_weight, req.sparse_weight].into_iter().flatten() {
        if !(0.0..=1000.0).contains(&weight) {
            return Err(KnowledgeError::Invalid(
                "weights must be between 0 and 1000".into(),
            ));
        }
    }
    if let Some(filters) = &req.metadata_filters {
        for (key, condition) in filters {
            check_condition(key, condition)?;
        }
    }
    Ok(())
}

/// The words of a query, lower-case, each once (at most 32).
pub fn terms(query: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .take(32)
        .collect()
}

/// The best chunks of a store (or of one document of it) for a query, for a user who
/// may search it (as if the store did not exist otherwise).
pub async fn search_chunks(
    services: &Services,
    actor: &User,
    slug: &str,
    req: &SearchRequest,
    doc_id: Option<&str>,
) -> KnowledgeResult<Outcome<SearchHit>> {
    super::check_search(services, actor, slug).await?;
    chunks(services, slug, req, doc_id, Some(actor.id)).await
}

/// The best documents for a query, for a user who may search the store.
pub async fn search_documents(
    services: &Services,
    actor: &User,
    slug: &str,
    req: &SearchRequest,
) -> KnowledgeResult<Outcome<DocumentHit>> {
    super::check_search(services, actor, slug).await?;
    documents(services, slug, req, Some(actor.id)).await
}

/// [`search_chunks`] for a caller that checked who searches; the usage is `user_id`'s.
pub(crate) async fn chunks(
    services: &Services,
    slug: &str,
    req: &SearchRequest,
    doc_id: Option<&str>,
    user_id: Option<i64>,
) -> KnowledgeResult<Outcome<SearchHit>> {
    check(req)?;
    let store = store_by_slug(services, slug).await?;
    let depth = (req.top_k * 8).clamp(50, 400);
    let (scored, semantic, notice) =
        candidates(services, &store, req, doc_id, depth, user_id).await?;
    let top: Vec<(i64, Candidate, f64)> = scored.into_iter().take(req.top_k).collect();
    let results = hits(services, top).await?;
    Ok(Outcome {
        results,
        semantic,
        notice,
    })
}

/// The best documents: chunks found as by [`chunks`], grouped by document with their
/// scores summed; `chunks_per_document` matches are kept for each. The caller checked who
/// searches (a workflow its owner may run on the store).
pub(crate) async fn documents(
    services: &Services,
    slug: &str,
    req: &SearchRequest,
    user_id: Option<i64>,
) -> KnowledgeResult<Outcome<DocumentHit>> {
    check(req)?;
    let store = store_by_slug(services, slug).await?;
    let per_document = req.chunks_per_document.unwrap_or(3);
    let depth = (req.top_k.max(per_document) * 10).clamp(50, 400);
    let (scored, semantic, notice) =
        candidates(services, &store, req, None, depth, user_id).await?;
    let all = hits(services, scored).await?;
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, DocumentHit> = HashMap::new();
    for hit in all {
        let doc = groups.entry(hit.chunk.doc_id.clone()).or_insert_with(|| {
            order.push(hit.chunk.doc_id.clone());
            DocumentHit {
                doc_id: hit.chunk.doc_id.clone(),
                title: hit.chunk.document_title.clone(),
                filename: hit.chunk.filename.clone(),
                score: 0.0,
                metadata: hit.chunk.document_metadata.clone(),
                matches: Vec::new(),
            }
        });
        doc.score += hit.score;
        if doc.matches.len() < per_document {
            doc.matches.push(hit);
        }
    }
    let mut results: Vec<DocumentHit> = order
        .into_iter()
        .filter_map(|d| groups.remove(&d))
        .collect();
    results.sort_by(|a, b| b.score.total_cmp(&a.score));
    results.truncate(req.top_k);
    Ok(Outcome {
        results,
        semantic,
        notice,
    })
}

/// Candidates from both indexes, scored and sorted best first.
async fn candidates(
    services: &Services,
    store: &VectorStore,
    req: &SearchRequest,
    doc_id: Option<&str>,
    depth: usize,
    user_id: Option<i64>,
) -> KnowledgeResult<(Vec<(i64, Candidate, f64)>, bool, Option<String>)> {
    // Documents first: a filter or a single document narrows the search to them.
    let filters = req.metadata_filters.as_ref().filter(|f| !f.is_empty());
    let documents: Option<Vec<i64>> = if doc_id.is_some() || filters.is_some() {
        let docs = services.store.documents(store.id).await?;
        let chosen: Vec<i64> = docs
            .iter()
            .filter(|d| doc_id.is_none_or(|id| d.doc_id == id))
            .filter(|d| {
                filters.is_none_or(|f| {
                    let mut fields = d.metadata.as_object().cloned().unwrap_or_default();
                    fields.insert("doc_id".into(), Value::String(d.doc_id.clone()));
                    fields.insert("store".into(), Value::String(store.slug.clone()));
                    if let Some(title) = &d.title {
                        fields
                            .entry("title")
                            .or_insert(Value::String(title.clone()));
                    }
                    matches(&fields, f)
                })
            })
            .map(|d| d.id)
            .collect();
        if doc_id.is_some() && chosen.is_empty() && filters.is_none() {
            return Err(KnowledgeError::DocumentNotFound(
                doc_id.unwrap_or_default().to_string(),
            ));
        }
        Some(chosen)
    } else {
        None
    };
    if documents.as_ref().is_some_and(Vec::is_empty) {
        return Ok((Vec::new(), store.embedding_model_id.is_some(), None));
    }
    let documents = documents.as_deref();

    // The query's vector, when the store has a model and vectors of its dimension.
    let mut notice = None;
    let mut query_vector = None;
    match (store.embedding_model_id, store.dimensions) {
        (None, _) => {
            notice = Some("this store has no embedding model: full-text search only".to_string());
        }
        (Some(_), None) => {
            notice =
                Some("no chunk of this store has a vector yet: full-text search only".to_string());
        }
        (Some(model), Some(dims)) => {
            match embed(services, model, std::slice::from_ref(&req.query), user_id).await {
                Ok(mut vectors) => match vectors.pop() {
                    Some(v) if v.len() == dims as usize => query_vector = Some(v),
                    Some(v) => {
                        notice = Some(format!(
                            "the embedding model now answers with {} dimensions and the store holds {dims}: full-text search only until it is re-embedded",
                            v.len()
                        ));
                    }
                    None => {}
                },
                Err(err) => {
                    tracing::warn!(store = %store.slug, error = %err, "query embedding failed; searching full text only");
                    notice = Some(format!(
                        "semantic search is unavailable ({err}): full-text search only"
                    ));
                }
            }
        }
    }

    let mut found: HashMap<i64, Candidate> = HashMap::new();
    let blank = || Candidate {
        dense: None,
        dense_rank: None,
        text: None,
        text_rank: None,
    };
    // Both lists at once, on two connections: the query waits for the slower one only.
    let words = terms(&req.query);
    let dense = async {
        match &query_vector {
            Some(vector) => {
                services
                    .store
                    .dense_search(store.id, vector.len() as i32, vector, depth, documents)
                    .await
            }
            None => Ok(Vec::new()),
        }
    };
    let text = async {
        if words.is_empty() {
            Ok(Vec::new())
        } else {
            services
                .store
                .text_search(store.id, &words, depth, documents)
                .await
        }
    };
    let (dense, text) = tokio::join!(dense, text);
    for (rank, (id, similarity)) in dense?.into_iter().enumerate() {
        let c = found.entry(id).or_insert_with(blank);
        c.dense = Some(similarity);
        c.dense_rank = Some(rank + 1);
    }
    for (rank, (id, relevance)) in text?.into_iter().enumerate() {
        let c = found.entry(id).or_insert_with(blank);
        c.text = Some(relevance);
        c.text_rank = Some(rank + 1);
    }
    // Text-only candidates get their exact similarity, so every result has both scores.
    if let Some(vector) = &query_vector {
        let missing: Vec<i64> = found
            .iter()
            .filter(|(_, c)| c.dense.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            for (id, similarity) in services
                .store
                .dense_scores(vector.len() as i32, vector, &missing)
                .await?
            {
                if let Some(c) = found.get_mut(&id) {
                    c.dense = Some(similarity);
                }
            }
        }
    }

    let weighted = match req.ranking {
        Some(Ranking::Weighted) => true,
        Some(Ranking::Rrf) => false,
        None => req.dense_weight.is_some() || req.sparse_weight.is_some(),
    };
    let semantic = query_vector.is_some();
    let max_text = found.values().filter_map(|c| c.text).fold(0.0f64, f64::max);
    let (wd, ws) = match (
        semantic,
        req.dense_weight.unwrap_or(0.5),
        req.sparse_weight.unwrap_or(0.5),
    ) {
        (false, _, ws) => (0.0, if ws > 0.0 { ws } else { 1.0 }),
        (true, wd, ws) if wd + ws <= 0.0 => (0.5, 0.5),
        (true, wd, ws) => (wd, ws),
    };
    let mut scored: Vec<(i64, Candidate, f64)> = found
        .into_iter()
        .map(|(id, c)| {
            let score = if weighted {
                let dense = c.dense.map_or(0.0, |d| (d + 1.0) / 2.0);
                let text = match (c.text, max_text > 0.0) {
                    (Some(t), true) => t / max_text,
                    _ => 0.0,
                };
                (wd * dense + ws * text) / (wd + ws)
            } else {
                c.dense_rank.map_or(0.0, |r| 1.0 / (RRF_K + r as f64))
                    + c.text_rank.map_or(0.0, |r| 1.0 / (RRF_K + r as f64))
            };
            (id, c, score)
        })
        .collect();
    // Equal fused scores (common with rank fusion: first in one list and second in the
    // other) go to the closer meaning, then the better text match.
    let value = |v: Option<f64>| v.unwrap_or(f64::MIN);
    scored.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| value(b.1.dense).total_cmp(&value(a.1.dense)))
            .then_with(|| value(b.1.text).total_cmp(&value(a.1.text)))
            .then(a.0.cmp(&b.0))
    });
    Ok((scored, semantic, notice))
}

async fn hits(
    services: &Services,
    scored: Vec<(i64, Candidate, f64)>,
) -> KnowledgeResult<Vec<SearchHit>> {
    let ids: Vec<i64> = scored.iter().map(|(id, _, _)| *id).collect();
    let mut rows: HashMap<i64, ChunkHit> = services
        .store
        .chunk_hits(&ids)
        .await?
        .into_iter()
        .map(|h| (h.chunk_id, h))
        .collect();
    Ok(scored
        .into_iter()
        .filter_map(|(id, c, score)| {
            rows.remove(&id).map(|chunk| SearchHit {
                chunk,
                dense_score: c.dense,
                bm25_score: c.text,
                score,
            })
        })
        .collect())
}

const OPERATORS: &[&str] = &["eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"];

fn is_operator_object(condition: &Value) -> bool {
    condition
        .as_object()
        .is_some_and(|o| !o.is_empty() && o.keys().all(|k| OPERATORS.contains(&k.as_str())))
}

fn check_condition(key: &str, condition: &Value) -> KnowledgeResult<()> {
    if let Some(ops) = condition
        .as_object()
        .filter(|_| is_operator_object(condition))
    {
        for (op, operand) in ops {
            let ok = match op.as_str() {
                "in" | "nin" => operand.is_array(),
                "gt" | "gte" | "lt" | "lte" => operand.is_number() || operand.is_string(),
                _ => true,
            };
            if !ok {
                return Err(KnowledgeError::Invalid(format!(
                    "metadata_filters.{key}.{op}: {} expects {}",
                    op,
                    if op.ends_with("in") {
                        "a list"
                    } else {
                        "a number or a date"
                    }
                )));
            }
        }
    }
    Ok(())
}

/// Whether `fields` satisfy every filter: a plain value is an equality (a list field
/// matches when it contains the value); `{"in": [..]}`, `{"nin": [..]}`, `{"ne": x}` and
/// ranges (`gt`, `gte`, `lt`, `lte`) on numbers and dates.
pub fn matches(fields: &Map<String, Value>, filters: &Map<String, Value>) -> bool {
    filters.iter().all(|(key, condition)| {
        let field = fields.get(key);
        if !is_operator_object(condition) {
            return field.is_some_and(|f| equal(f, condition));
        }
        condition
            .as_object()
            .into_iter()
            .flatten()
            .all(|(op, operand)| match op.as_str() {
                "eq" => field.is_some_and(|f| equal(f, operand)),
                "ne" => !field.is_some_and(|f| equal(f, operand)),
                "in" => field.is_some_and(|f| {
                    operand
                        .as_array()
                        .is_some_and(|list| list.iter().any(|v| equal(f, v)))
                }),
                "nin" => !field.is_some_and(|f| {
                    operand
                        .as_array()
                        .is_some_and(|list| list.iter().any(|v| equal(f, v)))
                }),
                range => {
                    field
                        .and_then(|f| compare(f, operand))
                        .is_some_and(|ordering| match range {
                            "gt" => ordering.is_gt(),
                            "gte" => ordering.is_ge(),
                            "lt" => ordering.is_lt(),
                            _ => ordering.is_le(),
                        })
                }
            })
    })
}

fn equal(field: &Value, value: &Value) -> bool {
    match (field, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(items), v) if !v.is_array() => items.iter().any(|i| equal(i, v)),
        (a, b) => a == b,
    }
}

fn compare(field: &Value, operand: &Value) -> Option<std::cmp::Ordering> {
    match (field, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => match (date(a), date(b)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(a.cmp(b)),
        },
        _ => None,
    }
}

/// A date or a date-time (compared as UTC).
fn date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filters_cover_equality_lists_and_ranges() {
        let fields = map(
            json!({"lang": "fr", "tags": ["a", "b"], "year": 2021, "published": "2024-03-01T10:00:00Z"}),
        );
        let yes = |f: Value| assert!(matches(&fields, &map(f.clone())), "{f}");
        let no = |f: Value| assert!(!matches(&fields, &map(f.clone())), "{f}");
        yes(json!({"lang": "fr"}));
        no(json!({"lang": "en"}));
        yes(json!({"tags": "b"}));
        yes(json!({"year": 2021.0}));
        yes(json!({"lang": {"in": ["en", "fr"]}}));
        no(json!({"lang": {"nin": ["fr"]}}));
        yes(json!({"year": {"gte": 2020, "lt": 2022}}));
        no(json!({"year": {"gt": 2021}}));
        yes(json!({"published": {"gte": "2024-01-01", "lt": "2024-03-02"}}));
        no(json!({"published": {"lt": "2024-03-01"}}));
        no(json!({"missing": "x"}));
        yes(json!({"missing": {"ne": "x"}}));
        // An object value with ordinary keys is an equality.
        let nested = map(json!({"owner": {"name": "Ada"}}));
        assert!(matches(&nested, &map(json!({"owner": {"name": "Ada"}}))));
    }

    #[test]
    fn query_terms_are_words_once() {
        assert_eq!(
            terms("Café, café! 42-b OR (x)"),
            ["café", "42", "b", "or", "x"]
        );
    }
}
