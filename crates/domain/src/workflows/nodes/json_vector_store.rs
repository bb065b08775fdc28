//! `json_vector_store`: ingests a JSON document computed by the workflow into a knowledge
//! base (the seed's node): flattened to `path: value` lines, chunked by entries, embedded;
//! the same `doc_id` replaces the document. `input` passes through, with the ingestion's
//! summary under `ingested`.
//!
//! ```json
//! {"vector_store_slug": "tickets", "doc_id_expression": "input.output_parsed.id",
//!  "document_expression": "input.output_parsed", "metadata_expression": "{\"source\": \"chat\"}"}
//! ```
//! Without `document_expression`, the previous step's structured output is ingested; without
//! `doc_id_expression`, its `doc_id`/`id`/`slug`, else `<node slug>-<random>`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, has_extra};
use crate::workflows::expr;
use crate::{
    runs::{
        knowledge,
        step::{Log, RunCtx},
    },
    workflows::Node,
};

pub(crate) const EXAMPLE: &str = r#"{"vector_store_slug": "tickets", "doc_id_expression": "input.output_parsed.id", "document_expression": "input.output_parsed", "metadata_expression": "{'source': 'chat'}"}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct JsonVectorStore {
    #[serde(default)]
    pub vector_store_slug: Option<String>,
    #[serde(default)]
    pub doc_id_expression: Option<String>,
    #[serde(default)]
    pub document_expression: Option<String>,
    #[serde(default)]
    pub metadata_expression: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(JsonVectorStore);

impl JsonVectorStore {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if self
            .vector_store_slug
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.error(
                "invalid_parameter",
                Some("parameters.vector_store_slug"),
                "the node needs the `vector_store_slug` to ingest into",
            );
        }
        for (field, value) in [
            ("doc_id_expression", &self.doc_id_expression),
            ("document_expression", &self.document_expression),
            ("metadata_expression", &self.metadata_expression),
        ] {
            if let Some(source) = value.as_deref().filter(|s| !s.trim().is_empty()) {
                if source.contains("{{") {
                    expr::check_template(source, &format!("parameters.{field}"), problems);
                } else {
                    expr::check_expression(source, &format!("parameters.{field}"), problems);
                }
            }
        }
    }
}

pub const KIND: Kind = Kind::of(&JsonVectorStoreKind);

struct JsonVectorStoreKind;

impl NodeKind for JsonVectorStoreKind {
    fn name(&self) -> &'static str {
        "json_vector_store"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<JsonVectorStore>(params, problems, JsonVectorStore::check)
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
            let input = log.run.last_output.clone();
            knowledge::json_vector_store(ctx, log, node, &scope, input).await
        })
    }
}
