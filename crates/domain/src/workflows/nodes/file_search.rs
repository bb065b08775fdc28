//! `file_search`: searches knowledge bases (vector stores) and passes the results on as
//! `input` (`{query, results: [...], text}`), for an agent to read or a widget to show.
//!
//! ```json
//! {"vector_store_slug": "handbook", "query": "{{ input.output_text }}", "top_k": 5,
//!  "metadata_filters": {"lang": "en"}}
//! ```
//! Without `query`, the user's latest message is searched. `vector_store_slugs` searches
//! several stores and merges their results by score.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, has_extra};
use crate::{
    knowledge::names_store,
    runs::{
        knowledge,
        step::{Log, RunCtx},
    },
    workflows::{Node, import::AbNode},
};
use crate::{knowledge::search::MAX_TOP_K, workflows::expr};

pub(crate) const EXAMPLE: &str = r#"{"vector_store_slug": "handbook", "query": "{{ input.output_text }}", "top_k": 5, "metadata_filters": {"lang": "en"}}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct FileSearch {
    /// What to search for (a template); the latest user message when absent.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub vector_store_slug: Option<String>,
    #[serde(default, alias = "vector_store_ids")]
    pub vector_store_slugs: Option<Vec<String>>,
    #[serde(default, alias = "max_num_results")]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub metadata_filters: Option<Map<String, Value>>,
    /// Results as documents (each with its best chunks) instead of chunks.
    #[serde(default)]
    pub return_documents: Option<bool>,
    #[serde(default)]
    pub chunks_per_document: Option<usize>,
    /// `rrf` (default) or `weighted`.
    #[serde(default)]
    pub ranking: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(FileSearch);

impl FileSearch {
    /// The stores to search, in order, each once.
    pub fn stores(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for slug in self
            .vector_store_slug
            .iter()
            .chain(self.vector_store_slugs.iter().flatten())
        {
            let slug = slug.trim().to_string();
            if !slug.is_empty() && !out.contains(&slug) {
                out.push(slug);
            }
        }
        out
    }

    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.stores().is_empty() {
            problems.error(
                "invalid_parameter",
                Some("parameters.vector_store_slug"),
                "a file search needs `vector_store_slug` (or `vector_store_slugs`)",
            );
        }
        if let Some(query) = &self.query {
            expr::check_template(query, "parameters.query", problems);
        }
        if let Some(k) = self.top_k
            && !(1..=MAX_TOP_K).contains(&k)
        {
            problems.error(
                "invalid_parameter",
                Some("parameters.top_k"),
                format!("must be between 1 and {MAX_TOP_K}"),
            );
        }
        if let Some(ranking) = self.ranking.as_deref()
            && !matches!(ranking, "rrf" | "weighted")
        {
            problems.error(
                "invalid_parameter",
                Some("parameters.ranking"),
                "must be `rrf` or `weighted`",
            );
        }
    }
}

pub const KIND: Kind = Kind::of(&FileSearchKind);

struct FileSearchKind;

impl NodeKind for FileSearchKind {
    fn name(&self) -> &'static str {
        "file_search"
    }

    /// The seed's planned name for a store search.
    fn aliases(&self) -> &'static [&'static str] {
        &["vector_store_search"]
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["FileSearch"]
    }

    /// Agent Builder's store ids become slugs: a knowledge base with that slug (or a
    /// change of the node) is needed before it runs.
    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("on_result".into(), String::new());
        let config = node.config.clone();
        for key in ["vector_store_id", "vector_store_slug"] {
            if let Some(id) = config.get(key).and_then(Value::as_str) {
                node.params
                    .insert("vector_store_slug".into(), json!(id.to_ascii_lowercase()));
            }
        }
        if let Some(ids) = config.get("vector_store_ids").and_then(Value::as_array) {
            let slugs: Vec<Value> = ids
                .iter()
                .filter_map(Value::as_str)
                .map(|s| json!(s.to_ascii_lowercase()))
                .collect();
            node.params
                .insert("vector_store_slugs".into(), Value::Array(slugs));
        }
        match config.get("query") {
            Some(Value::String(text)) => {
                node.params.insert("query".into(), json!(text));
            }
            Some(Value::Object(query)) => {
                if let Some(expression) = query.get("expression").and_then(Value::as_str) {
                    let template = if expression.contains("{{") {
                        expression.to_string()
                    } else {
                        format!("{{{{ {expression} }}}}")
                    };
                    node.params.insert("query".into(), json!(template));
                }
            }
            _ => {}
        }
        if let Some(k) = config
            .get("max_results")
            .or_else(|| config.get("max_num_results"))
            .and_then(Value::as_u64)
        {
            node.params.insert("top_k".into(), json!(k.clamp(1, 50)));
        }
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<FileSearch>(params, problems, FileSearch::check)
    }

    fn effectful(&self) -> bool {
        true
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        Box::pin(async move {
            let scope = ctx.scope(log.run);
            knowledge::file_search(ctx, log, node, &scope).await
        })
    }

    fn uses_store(&self, params: &Map<String, Value>, slug: &str) -> bool {
        names_store(&Value::Object(params.clone()), slug)
    }
}
