//! References from a graph to things outside it: models, library widgets, vector stores and
//! other workflows.
//!
//! `workflows::validate_only` checks each against its registry: a nested workflow must
//! exist (for the author) and not be the workflow itself (an error); a model, a library
//! widget or a knowledge base that is missing is a warning, since it may be added before
//! the version runs.

use serde_json::Value;

use super::{Graph, nodes::Kind};

/// Something a node points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Model(String),
    Widget(String),
    VectorStore(String),
    /// A nested workflow, by id or slug.
    Workflow {
        id: Option<i64>,
        slug: Option<String>,
    },
}

/// Every reference in the graph, with the node and field it comes from.
pub fn collect(graph: &Graph) -> Vec<(String, String, Reference)> {
    let mut found = Vec::new();
    for node in graph.nodes.iter().filter(|n| n.is_enabled) {
        let p = &node.parameters;
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut push = |field: &str, reference: Reference| {
            found.push((node.slug.clone(), field.to_string(), reference))
        };
        if let Some(model) = text(p.get("model")) {
            push("parameters.model", Reference::Model(model));
        }
        for (index, option) in p
            .get("user_model_options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(model) = text(option.get("model")) {
                push(
                    &format!("parameters.user_model_options[{index}].model"),
                    Reference::Model(model),
                );
            }
        }
        let widget = p.get("widget").or_else(|| p.get("response_widget"));
        match widget {
            Some(Value::String(slug)) if !slug.trim().is_empty() => push(
                "parameters.widget",
                Reference::Widget(slug.trim().to_string()),
            ),
            Some(Value::Object(w))
                if w.get("source").and_then(Value::as_str).unwrap_or("library") == "library" =>
            {
                if let Some(slug) = text(w.get("slug")) {
                    push("parameters.widget.slug", Reference::Widget(slug));
                }
            }
            _ => {}
        }
        if let Some(store) = text(
            p.get("vector_store_ingestion")
                .and_then(|v| v.get("vector_store_slug")),
        ) {
            push(
                "parameters.vector_store_ingestion.vector_store_slug",
                Reference::VectorStore(store),
            );
        }
        if let Some(kind) = Kind::parse(&node.kind) {
            for (field, reference) in kind.behaviour().references(p) {
                push(field, reference);
            }
        }
    }
    found
}
