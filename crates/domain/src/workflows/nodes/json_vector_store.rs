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

use super::{Problems, has_extra};
use crate::workflows::expr;

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
