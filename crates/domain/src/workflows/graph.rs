//! The graph format: the seed system's JSON (`nodes`, `edges`) plus workflow-level schemas.
//!
//! This is persisted as one JSON document per version, so export and import are lossless:
//! what is stored is exactly this structure.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A workflow graph as authored and stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// JSON Schema of the state variables, with their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_schema: Option<Value>,
    /// JSON Schema of the input a headless caller gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
}

fn enabled_by_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub slug: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The enclosing `while` loop, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_slug: Option<String>,
    #[serde(default = "enabled_by_default", skip_serializing_if = "is_true")]
    pub is_enabled: bool,
    /// Kind-specific configuration; see `nodes`.
    #[serde(
        default,
        deserialize_with = "object_or_null",
        skip_serializing_if = "Map::is_empty"
    )]
    pub parameters: Map<String, Value>,
    /// Editor data (position, colours); stored, never interpreted.
    #[serde(
        default,
        deserialize_with = "object_or_null",
        skip_serializing_if = "Map::is_empty"
    )]
    pub metadata: Map<String, Value>,
    /// Legacy seed field, kept for round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_key: Option<String>,
    /// Keys this version does not know, kept as authored; validation warns about them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A transition between two nodes; `condition` is the branch label, if any (`label`, the
/// name most editors use, is read as `condition`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub source: String,
    pub target: String,
    #[serde(
        default,
        alias = "label",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "trimmed_label"
    )]
    pub condition: Option<String>,
    #[serde(
        default,
        deserialize_with = "object_or_null",
        skip_serializing_if = "Map::is_empty"
    )]
    pub metadata: Map<String, Value>,
    /// Keys this version does not know, kept as authored; validation warns about them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The seed system's database columns that its exports carry on nodes and edges: read
/// and dropped, since ids and timestamps are the new version's own.
const SEED_ROW_KEYS: &[&str] = &[
    "id",
    "position",
    "created_at",
    "updated_at",
    "workflow_id",
    "version_id",
    "definition_id",
];

fn object_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an object, found {}",
            json_type(&other)
        ))),
    }
}

/// Labels are trimmed, and an empty label means "no label", as in the seed system.
fn trimmed_label<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let label = Option::<String>::deserialize(deserializer)?;
    Ok(label
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty()))
}

/// The JSON type name of a value, for messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Graph {
    /// The smallest runnable graph: start → end.
    pub fn minimal() -> Graph {
        serde_json::from_value(serde_json::json!({
            "nodes": [
                {"slug": "start", "kind": "start", "display_name": "Start"},
                {"slug": "end", "kind": "end", "display_name": "End"}
            ],
            "edges": [{"source": "start", "target": "end"}]
        }))
        .expect("the minimal graph is well formed")
    }

    /// Reads a graph from JSON, reporting where a malformed document goes wrong. The seed
    /// system's row columns (ids, timestamps) are dropped; other unknown keys are kept.
    pub fn from_json(value: Value) -> Result<Graph, String> {
        let mut graph: Graph = serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            if path == "." {
                err.inner().to_string()
            } else {
                format!("{path}: {}", err.inner())
            }
        })?;
        for extra in graph
            .nodes
            .iter_mut()
            .map(|n| &mut n.extra)
            .chain(graph.edges.iter_mut().map(|e| &mut e.extra))
        {
            extra.retain(|key, _| !SEED_ROW_KEYS.contains(&key.as_str()));
        }
        Ok(graph)
    }

    pub fn node(&self, slug: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.slug == slug)
    }

    /// Lookups by slug in constant time, for code that walks the graph node by node.
    pub fn index(&self) -> GraphIndex<'_> {
        let mut out: std::collections::HashMap<&str, Vec<&Edge>> = Default::default();
        for edge in &self.edges {
            out.entry(edge.source.as_str()).or_default().push(edge);
        }
        let mut nodes: std::collections::HashMap<&str, &Node> = Default::default();
        for node in &self.nodes {
            nodes.entry(node.slug.as_str()).or_insert(node);
        }
        GraphIndex { nodes, out }
    }
}

/// A graph's nodes by slug and edges by source, in the graph's order.
#[derive(Debug, Clone)]
pub struct GraphIndex<'g> {
    nodes: std::collections::HashMap<&'g str, &'g Node>,
    out: std::collections::HashMap<&'g str, Vec<&'g Edge>>,
}

impl<'g> GraphIndex<'g> {
    /// The node with this slug (the first one, if a malformed graph repeats it).
    pub fn node(&self, slug: &str) -> Option<&'g Node> {
        self.nodes.get(slug).copied()
    }

    /// The edges leaving `slug`, in the graph's order.
    pub fn outgoing(&self, slug: &str) -> &[&'g Edge] {
        self.out.get(slug).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_exports_read_and_write_back() {
        // A seed export carries ids, positions and timestamps that we do not keep.
        let seed = serde_json::json!({
            "nodes": [
                {"id": 3, "slug": "start", "kind": "start", "position": 1, "is_enabled": true,
                 "parameters": {}, "metadata": {"position": {"x": 0, "y": 0}},
                 "created_at": "2025-01-01T00:00:00Z", "agent_key": null, "display_name": null},
                {"id": 4, "slug": "end", "kind": "end", "parameters": null, "metadata": null, "is_enabled": false}
            ],
            "edges": [{"id": 9, "source": "start", "target": "end", "condition": "  ", "metadata": {"label": ""}}]
        });
        let graph = Graph::from_json(seed).unwrap();
        assert_eq!(graph.nodes.len(), 2);
        assert!(!graph.nodes[1].is_enabled);
        assert_eq!(graph.edges[0].condition, None);
        let written = serde_json::to_value(&graph).unwrap();
        assert_eq!(Graph::from_json(written).unwrap(), graph);
    }

    #[test]
    fn edge_labels_and_unknown_keys_are_kept() {
        let graph = Graph::from_json(serde_json::json!({
            "nodes": [{"slug": "a", "kind": "start", "colour": "red"}],
            "edges": [{"source": "a", "target": "b", "label": " yes ", "weight": 2}]
        }))
        .unwrap();
        assert_eq!(graph.edges[0].condition.as_deref(), Some("yes"));
        assert_eq!(graph.edges[0].extra["weight"], 2);
        assert_eq!(graph.nodes[0].extra["colour"], "red");
        let written = serde_json::to_value(&graph).unwrap();
        assert_eq!(written["nodes"][0]["colour"], "red");
        assert_eq!(written["edges"][0]["condition"], "yes");
        assert_eq!(Graph::from_json(written).unwrap(), graph);
    }

    #[test]
    fn malformed_graphs_say_where() {
        let err =
            Graph::from_json(serde_json::json!({"nodes": [{"slug": "a", "kind": 3}]})).unwrap_err();
        assert!(err.starts_with("nodes[0].kind"), "{err}");
        let err = Graph::from_json(
            serde_json::json!({"nodes": [{"slug": "a", "kind": "x", "parameters": []}]}),
        )
        .unwrap_err();
        assert!(
            err.contains("parameters") && err.contains("an object"),
            "{err}"
        );
    }
}
