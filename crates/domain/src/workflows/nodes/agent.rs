//! `agent`: calls a model with instructions, tools and optional structured output.
//!
//! ```json
//! {"instructions": "Answer {{ user.email }} briefly.", "model": "gpt-5-mini",
//!  "model_settings": {"temperature": 0.2},
//!  "response_format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}}
//! ```
//! With `workflow: {"slug": "other"}`, the node runs that workflow as a sub-workflow instead.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};
use crate::workflows::{expr, schema};

pub(crate) const EXAMPLE: &str = r#"{"instructions": "Answer {{ user.email }} briefly.", "model": "gpt-5-mini", "model_settings": {"temperature": 0.2, "include_chat_history": true}, "response_format": {"type": "json_schema", "name": "answer", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}, "tools": [{"type": "web_search"}]}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Agent {
    /// System instructions (a template, rendered before every run).
    #[serde(default)]
    pub instructions: Option<String>,
    /// Model name from the registry.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub model_provider_id: Option<String>,
    #[serde(default, alias = "model_provider")]
    pub model_provider_slug: Option<String>,
    /// temperature, top_p, reasoning, text.verbosity, include_chat_history, response_in_chat, …
    #[serde(default)]
    pub model_settings: Option<Map<String, Value>>,
    /// `{type: "json_schema", name, schema, strict}` (or with a nested `json_schema`), or `{type: "text"}`.
    #[serde(default)]
    pub response_format: Option<Map<String, Value>>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default, alias = "response_widget")]
    pub widget: Option<Value>,
    #[serde(default)]
    pub vector_store_ingestion: Option<Map<String, Value>>,
    /// Run another workflow instead of a model: `{id}` or `{slug}`.
    #[serde(default)]
    pub workflow: Option<Value>,
    #[serde(default)]
    pub user_model_options: Option<Vec<Value>>,
    #[serde(default)]
    pub model_selection_mode: Option<String>,
    /// The agent's name as shown in traces.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub handoffs: Option<Vec<Value>>,
    /// Extra prompt messages `{role, content: [{type, text}]}` sent after the instructions;
    /// their texts are templates (Agent Builder's `messages`).
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Agent);

impl Agent {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if let Some(instructions) = &self.instructions {
            expr::check_template(instructions, "parameters.instructions", problems);
        }
        for (index, message) in self.messages.iter().flatten().enumerate() {
            let parts = message
                .get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (part_index, part) in parts.iter().enumerate() {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    expr::check_template(
                        text,
                        &format!("parameters.messages[{index}].content[{part_index}].text"),
                        problems,
                    );
                }
            }
        }
        if let Some(format) = &self.response_format {
            check_response_format(format, problems);
        }
        for (index, tool) in self.tools.iter().flatten().enumerate() {
            let named = tool.as_object().is_some_and(|t| {
                ["type", "tool", "name"]
                    .iter()
                    .any(|k| t.get(*k).is_some_and(Value::is_string))
            });
            if !named && !tool.is_string() {
                problems.error(
                    "invalid_parameter",
                    Some(&format!("parameters.tools[{index}]")),
                    "a tool is an object with a `type` (or `name`)",
                );
            }
        }
        if let Some(workflow) = &self.workflow {
            let id_ok = workflow
                .get("id")
                .and_then(Value::as_i64)
                .is_some_and(|id| id > 0);
            let slug_ok = workflow
                .get("slug")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty());
            let bare_slug = workflow.as_str().is_some_and(|s| !s.trim().is_empty());
            if !(id_ok || slug_ok || bare_slug) {
                problems.error(
                    "invalid_parameter",
                    Some("parameters.workflow"),
                    "a nested workflow is `{\"id\": <positive integer>}` or `{\"slug\": \"...\"}`",
                );
            }
        }
        if self.workflow.is_none() && self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            problems.warning(
                "missing_model",
                Some("parameters.model"),
                "no model is set: the default model will be used",
            );
        }
    }
}

fn check_response_format(format: &Map<String, Value>, problems: &mut Problems) {
    let field = "parameters.response_format";
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_schema") => {
            let inner = format
                .get("json_schema")
                .and_then(Value::as_object)
                .unwrap_or(format);
            match inner.get("schema") {
                Some(schema_value) => {
                    schema::check_schema(schema_value, &format!("{field}.schema"), problems)
                }
                None => problems.error(
                    "invalid_parameter",
                    Some(field),
                    "a json_schema response format needs a `schema`",
                ),
            }
        }
        _ => problems.error(
            "invalid_parameter",
            Some(field),
            "`type` must be `json_schema` or `text`",
        ),
    }
}
