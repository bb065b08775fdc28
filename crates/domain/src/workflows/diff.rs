//! Differences between two graphs: nodes and edges added, removed and changed, with node
//! changes listed field by field and parameter by parameter.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::graph::{Edge, Graph, Node};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphDiff {
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub nodes_changed: Vec<NodeChange>,
    pub edges_added: Vec<EdgeKey>,
    pub edges_removed: Vec<EdgeKey>,
    pub edges_changed: Vec<EdgeKey>,
    pub state_schema_changed: bool,
    pub input_schema_changed: bool,
}

impl GraphDiff {
    pub fn is_empty(&self) -> bool {
        self.nodes_added.is_empty()
            && self.nodes_removed.is_empty()
            && self.nodes_changed.is_empty()
            && self.edges_added.is_empty()
            && self.edges_removed.is_empty()
            && self.edges_changed.is_empty()
            && !self.state_schema_changed
            && !self.input_schema_changed
    }
}

/// An edge is identified by its ends and its label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EdgeKey {
    pub source: String,
    pub target: String,
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeChange {
    pub slug: String,
    pub changes: Vec<FieldChange>,
}

/// One changed field: `kind`, `display_name`, `parameters.model`, `parameters.cases[1].label`, …
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

fn key(edge: &Edge) -> EdgeKey {
    EdgeKey {
        source: edge.source.clone(),
        target: edge.target.clone(),
        condition: edge.condition.clone(),
    }
}

/// Compares `before` with `after`.
pub fn diff(before: &Graph, after: &Graph) -> GraphDiff {
    let old: BTreeMap<&str, &Node> = before.nodes.iter().map(|n| (n.slug.as_str(), n)).collect();
    let new: BTreeMap<&str, &Node> = after.nodes.iter().map(|n| (n.slug.as_str(), n)).collect();
    let nodes_added = new
        .keys()
        .filter(|s| !old.contains_key(*s))
        .map(|s| s.to_string())
        .collect();
    let nodes_removed = old
        .keys()
        .filter(|s| !new.contains_key(*s))
        .map(|s| s.to_string())
        .collect();
    let mut nodes_changed = Vec::new();
    for (slug, old_node) in &old {
        let Some(new_node) = new.get(slug) else {
            continue;
        };
        let mut changes = Vec::new();
        let before_value = serde_json::to_value(old_node).expect("nodes serialise");
        let after_value = serde_json::to_value(new_node).expect("nodes serialise");
        for field in [
            "kind",
            "display_name",
            "parent_slug",
            "is_enabled",
            "agent_key",
        ] {
            let (b, a) = (
                field_of(&before_value, field, field == "is_enabled"),
                field_of(&after_value, field, field == "is_enabled"),
            );
            if b != a {
                changes.push(FieldChange {
                    field: field.into(),
                    before: b,
                    after: a,
                });
            }
        }
        compare(
            "parameters",
            &Value::Object(old_node.parameters.clone()),
            &Value::Object(new_node.parameters.clone()),
            &mut changes,
        );
        compare(
            "metadata",
            &Value::Object(old_node.metadata.clone()),
            &Value::Object(new_node.metadata.clone()),
            &mut changes,
        );
        if !changes.is_empty() {
            nodes_changed.push(NodeChange {
                slug: slug.to_string(),
                changes,
            });
        }
    }

    let old_edges: BTreeMap<EdgeKey, &Edge> = before.edges.iter().map(|e| (key(e), e)).collect();
    let new_edges: BTreeMap<EdgeKey, &Edge> = after.edges.iter().map(|e| (key(e), e)).collect();
    GraphDiff {
        nodes_added,
        nodes_removed,
        nodes_changed,
        edges_added: new_edges
            .keys()
            .filter(|k| !old_edges.contains_key(*k))
            .cloned()
            .collect(),
        edges_removed: old_edges
            .keys()
            .filter(|k| !new_edges.contains_key(*k))
            .cloned()
            .collect(),
        edges_changed: old_edges
            .iter()
            .filter(|(k, e)| new_edges.get(*k).is_some_and(|n| n.metadata != e.metadata))
            .map(|(k, _)| k.clone())
            .collect(),
        state_schema_changed: before.state_schema != after.state_schema,
        input_schema_changed: before.input_schema != after.input_schema,
    }
}

fn field_of(node: &Value, field: &str, default_true: bool) -> Value {
    node.get(field).cloned().unwrap_or(if default_true {
        Value::Bool(true)
    } else {
        Value::Null
    })
}

/// Recurses into objects; arrays of equal length are compared element by element.
fn compare(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                compare(
                    &format!("{path}.{k}"),
                    b.get(k).unwrap_or(&Value::Null),
                    a.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (index, (bi, ai)) in b.iter().zip(a).enumerate() {
                compare(&format!("{path}[{index}]"), bi, ai, out);
            }
        }
        _ => out.push(FieldChange {
            field: path.to_string(),
            before: before.clone(),
            after: after.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reports_each_kind_of_change() {
        let before = Graph::from_json(json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "ask", "kind": "agent", "parameters": {"model": "a", "model_settings": {"temperature": 0.1}}},
                {"slug": "gone", "kind": "watch"},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}]
        }))
        .unwrap();
        let after = Graph::from_json(json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "ask", "kind": "agent", "is_enabled": false,
                 "parameters": {"model": "b", "model_settings": {"temperature": 0.1, "top_p": 1}}},
                {"slug": "new", "kind": "watch"},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "new"}],
            "state_schema": {"type": "object"}
        }))
        .unwrap();
        let d = diff(&before, &after);
        assert_eq!(d.nodes_added, ["new"]);
        assert_eq!(d.nodes_removed, ["gone"]);
        let fields: Vec<&str> = d.nodes_changed[0]
            .changes
            .iter()
            .map(|c| c.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "is_enabled",
                "parameters.model",
                "parameters.model_settings.top_p"
            ]
        );
        assert_eq!(d.edges_added[0].target, "new");
        assert_eq!(d.edges_removed[0].target, "end");
        assert!(d.state_schema_changed && !d.input_schema_changed);
        assert!(diff(&after, &after).is_empty());
    }
}
