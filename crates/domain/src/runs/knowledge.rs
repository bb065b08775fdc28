//! Knowledge in workflows: the `file_search` and `json_vector_store` steps, and the
//! knowledge tool of agents, whose results become the answer's citations.

use serde_json::{Map, Value, json};

use super::EventKind;
use super::step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse};
use crate::{
    error::DomainError,
    knowledge::{
        self, DocumentStatus, JsonIngest,
        search::{self, Ranking, SearchHit, SearchRequest},
    },
    workflows::{Node, eval::Scope, nodes},
};

/// How many characters of a passage a citation's description shows.
const CITATION_CHARS: usize = 200;

/// The results of searching some stores, merged.
pub(crate) struct Found {
    /// Passages, best first: `{source, store, doc_id, title, filename, chunk_index, text,
    /// score, dense_score, bm25_score, metadata}`.
    pub results: Vec<Value>,
    /// One ChatKit `file` source per document found.
    pub sources: Vec<Value>,
    pub semantic: bool,
}

impl Found {
    /// The passages as numbered text, for a prompt.
    pub fn text(&self) -> String {
        self.results
            .iter()
            .map(|r| {
                let title = r["title"]
                    .as_str()
                    .or_else(|| r["filename"].as_str())
                    .or_else(|| r["doc_id"].as_str())
                    .unwrap_or_default();
                format!(
                    "[{}] {title}\n{}",
                    r["source"],
                    r["text"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// Searches each store and merges the results by score (chunks, or documents' best
/// chunks); the first `top_k` remain.
pub(crate) async fn search_stores(
    ctx: &RunCtx<'_>,
    stores: &[String],
    req: &SearchRequest,
    documents: bool,
) -> Result<Found, NodeError> {
    let fail = |err: knowledge::KnowledgeError| node_error(err.code(), err.to_string());
    check_owner(ctx).await?;
    let mut hits: Vec<(String, SearchHit)> = Vec::new();
    let mut semantic = false;
    for slug in stores {
        if documents {
            let outcome = search::documents(ctx.services, slug, req, Some(ctx.user.id))
                .await
                .map_err(fail)?;
            semantic |= outcome.semantic;
            for doc in outcome.results {
                for hit in doc.matches {
                    hits.push((slug.clone(), hit));
                }
            }
        } else {
            let outcome = search::chunks(ctx.services, slug, req, None, Some(ctx.user.id))
                .await
                .map_err(fail)?;
            semantic |= outcome.semantic;
            hits.extend(outcome.results.into_iter().map(|h| (slug.clone(), h)));
        }
    }
    if stores.len() > 1 {
        hits.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    }
    if !documents {
        hits.truncate(req.top_k);
    }
    let mut sources: Vec<Value> = Vec::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    let results = hits
        .into_iter()
        .map(|(store, hit)| {
            let key = (store.clone(), hit.chunk.doc_id.clone());
            let source = match keys.iter().position(|k| *k == key) {
                Some(index) => index + 1,
                None => {
                    keys.push(key);
                    let title = hit
                        .chunk
                        .document_title
                        .clone()
                        .or_else(|| hit.chunk.filename.clone())
                        .unwrap_or_else(|| hit.chunk.doc_id.clone());
                    let description: String = hit.chunk.text.chars().take(CITATION_CHARS).collect();
                    sources.push(json!({
                        "type": "file",
                        "filename": hit.chunk.filename.clone().unwrap_or_else(|| hit.chunk.doc_id.clone()),
                        "title": title,
                        "description": description,
                        "group": store,
                    }));
                    keys.len()
                }
            };
            json!({
                "source": source,
                "store": store,
                "doc_id": hit.chunk.doc_id,
                "title": hit.chunk.document_title,
                "filename": hit.chunk.filename,
                "chunk_index": hit.chunk.chunk_index,
                "text": hit.chunk.text,
                "score": hit.score,
                "dense_score": hit.dense_score,
                "bm25_score": hit.bm25_score,
                "metadata": hit.chunk.document_metadata,
            })
        })
        .collect();
    Ok(Found {
        results,
        sources,
        semantic,
    })
}

/// Knowledge bases are used by administrators' workflows only.
async fn check_owner(ctx: &RunCtx<'_>) -> Result<(), NodeError> {
    match knowledge::workflow_may_use_stores(ctx.services, ctx.workflow).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(node_error(
            "forbidden",
            "only workflows owned by an administrator use knowledge bases",
        )),
        Err(err) => Err(node_error(err.code(), err.to_string())),
    }
}

fn ranking(text: Option<&str>) -> Option<Ranking> {
    match text {
        Some("weighted") => Some(Ranking::Weighted),
        Some("rrf") => Some(Ranking::Rrf),
        _ => None,
    }
}

/// The text of the latest user message, the default query.
fn last_user_text(log: &Log<'_>) -> String {
    log.run
        .history
        .iter()
        .rev()
        .find(|h| h.role == "user")
        .map(|h| h.text.clone())
        .or_else(|| {
            log.run
                .input
                .get("input_as_text")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// `file_search`: the results become `input`.
pub(crate) async fn file_search(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
) -> Result<Outcome, NodeError> {
    let config: nodes::file_search::FileSearch = parse(node)?;
    let query = match &config.query {
        Some(template) => scope.render_text(template)?,
        None => last_user_text(log),
    };
    if query.trim().is_empty() {
        return Err(node_error("empty_query", "the search query is empty"));
    }
    let req = SearchRequest {
        query: query.clone(),
        top_k: config.top_k.unwrap_or(5),
        metadata_filters: config.metadata_filters.clone(),
        dense_weight: None,
        sparse_weight: None,
        chunks_per_document: config.chunks_per_document,
        ranking: ranking(config.ranking.as_deref()),
    };
    let found = search_stores(
        ctx,
        &config.stores(),
        &req,
        config.return_documents == Some(true),
    )
    .await?;
    log.event(
        EventKind::KnowledgeSearched,
        Some(&node.slug),
        json!({"query": query, "stores": config.stores(), "results": found.results.len(), "semantic": found.semantic}),
    );
    let text = found.text();
    Ok(Outcome {
        output: json!({"query": query, "results": found.results, "sources": found.sources, "text": text, "semantic": found.semantic}),
        next: Next::Follow(None),
    })
}

/// `json_vector_store`: ingests a document built from expressions.
pub(crate) async fn json_vector_store(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
    input: Value,
) -> Result<Outcome, NodeError> {
    let config: nodes::json_vector_store::JsonVectorStore = parse(node)?;
    check_owner(ctx).await?;
    let slug = config.vector_store_slug.clone().unwrap_or_default();
    let eval = |source: &Option<String>| -> Result<Option<Value>, NodeError> {
        match source.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(source) => Ok(Some(scope.eval_value(&Value::String(source.to_string()))?)),
            None => Ok(None),
        }
    };
    // The previous step's structured output, as the seed picks it.
    let structured = [
        "output_structured",
        "output_parsed",
        "output",
        "output_text",
    ]
    .iter()
    .find_map(|key| match input.get(key) {
        Some(Value::Object(map)) => Some(Value::Object(map.clone())),
        Some(Value::String(text)) => serde_json::from_str::<Map<String, Value>>(text)
            .ok()
            .map(Value::Object),
        _ => None,
    });
    let document = match eval(&config.document_expression)? {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Some(value) => value,
        None => structured.clone().ok_or_else(|| {
            node_error("no_document", "there is no document to ingest: set `document_expression` or follow a step with structured output")
        })?,
    };
    let doc_id = match eval(&config.doc_id_expression)? {
        Some(Value::String(id)) if !id.trim().is_empty() => id,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => ["doc_id", "id", "slug", "reference", "uid"]
            .iter()
            .find_map(|key| {
                structured
                    .as_ref()
                    .and_then(|s| s.get(key))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
            })
            .unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    node.slug,
                    crate::ordered_id("doc").trim_start_matches("doc_")
                )
            }),
    };
    let mut metadata = match eval(&config.metadata_expression)? {
        Some(Value::Object(map)) => map,
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or_default(),
        _ => Map::new(),
    };
    metadata.insert("workflow_step".into(), json!(node.slug));
    if let Some(title) = node.display_name.as_deref() {
        metadata.insert("workflow_step_title".into(), json!(title));
    }
    let ingest = JsonIngest {
        doc_id: doc_id.clone(),
        document,
        metadata: Value::Object(metadata),
        store_title: None,
        store_metadata: None,
    };
    let doc = knowledge::ingest_json_from_workflow(ctx.services, ctx.user.id, &slug, ingest)
        .await
        .map_err(|err| node_error(err.code(), err.to_string()))?;
    debug_assert_eq!(doc.status, DocumentStatus::Ready);
    log.event(
        EventKind::KnowledgeIngested,
        Some(&node.slug),
        json!({"store": slug, "doc_id": doc.doc_id, "chunk_count": doc.chunk_count}),
    );
    let mut output = input;
    let summary = json!({"store": slug, "doc_id": doc.doc_id, "chunk_count": doc.chunk_count});
    match output.as_object_mut() {
        Some(map) => {
            map.insert("ingested".into(), summary);
        }
        None => output = json!({"value": output, "ingested": summary}),
    }
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}
