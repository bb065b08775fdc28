//! Reading workflows made elsewhere: our own exports, the seed system's graphs and exports,
//! and OpenAI Agent Builder workflows.
//!
//! Nothing is dropped silently. Nodes of kinds this version cannot run arrive disabled
//! (a disabled node is bypassed at run time), each with a warning; expressions that do not
//! compile are reported by validation like any other.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::{
    graph::{Edge, Graph, Node},
    nodes::{self, Kind},
    problems::{Problem, Problems},
    service::slugify,
};

/// The `format` field of our exports.
pub const NATIVE_FORMAT: &str = "switchyard.workflow";

/// What an import yields before it is saved.
#[derive(Debug, Clone)]
pub struct Imported {
    pub graph: Graph,
    pub warnings: Vec<Problem>,
    pub slug: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// Recognises the document's format and converts it.
pub fn read(document: &Value) -> Result<Imported, String> {
    let Some(object) = document.as_object() else {
        return Err("the document must be a JSON object".into());
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    if object.get("format").and_then(Value::as_str) == Some(NATIVE_FORMAT) {
        let workflow = object.get("workflow").cloned().unwrap_or(Value::Null);
        let graph = object
            .get("graph")
            .cloned()
            .ok_or("the export has no `graph`")?;
        return finish(
            Graph::from_json(graph)?,
            text(workflow.get("slug")),
            text(workflow.get("display_name")),
            text(workflow.get("description")),
        );
    }
    let is_agent_builder = object.contains_key("start_node_id")
        || object
            .get("nodes")
            .and_then(Value::as_array)
            .is_some_and(|nodes| nodes.iter().any(|n| n.get("node_type").is_some()));
    if is_agent_builder {
        return agent_builder(object);
    }
    // The seed system: an import payload `{graph, slug, display_name, …}`, a version
    // (`{workflow_slug, workflow_display_name, graph}`), or a bare `{nodes, edges}`.
    if let Some(graph) = object.get("graph") {
        return finish_seed(
            Graph::from_json(graph.clone())?,
            text(object.get("slug")).or_else(|| text(object.get("workflow_slug"))),
            text(object.get("display_name")).or_else(|| text(object.get("workflow_display_name"))),
            text(object.get("description")),
        );
    }
    if object.contains_key("nodes") {
        return finish_seed(
            Graph::from_json(document.clone())?,
            text(object.get("slug")),
            text(object.get("display_name")),
            text(object.get("description")),
        );
    }
    Err("unrecognised document: expected a Switchyard export, a seed-system graph (`nodes`, `edges`) or an Agent Builder workflow".into())
}

/// A seed-system graph: each kind adapts what the seed read differently
/// (`NodeKind::import_seed`), and the seed's Python expressions and Jinja filters become
/// CEL, each change listed; then as any import.
fn finish_seed(
    mut graph: Graph,
    slug: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
) -> Result<Imported, String> {
    let mut problems = Problems::new();
    for node in &mut graph.nodes {
        problems.at_node(Some(&node.slug));
        if let Some(kind) = Kind::parse(&node.kind) {
            kind.behaviour()
                .import_seed(&mut node.parameters, &mut problems);
        }
        let changes = super::seed_dialect::translate_parameters(&mut node.parameters);
        if !changes.is_empty() {
            problems.warning(
                "seed_expression_translated",
                Some("parameters"),
                format!(
                    "the seed's Python expressions and Jinja filters were translated to CEL: {}",
                    changes.join("; ")
                ),
            );
        }
    }
    problems.at_node(None);
    let mut imported = finish(graph, slug, display_name, description)?;
    let mut warnings = problems.into_vec();
    warnings.append(&mut imported.warnings);
    imported.warnings = warnings;
    Ok(imported)
}

/// The keys a JSON document gives twice in one object, with their line: JSON readers (the
/// seed system's and ours) keep the last one silently, so an import says so.
pub fn repeated_keys(text: &str) -> Vec<(String, usize)> {
    enum Frame {
        Object {
            keys: HashSet<String>,
            expects_key: bool,
        },
        Array,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut repeated = Vec::new();
    let (mut line, mut chars) = (1, text.chars());
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '{' => stack.push(Frame::Object {
                keys: HashSet::new(),
                expects_key: true,
            }),
            '[' => stack.push(Frame::Array),
            '}' | ']' => {
                stack.pop();
            }
            ',' => {
                if let Some(Frame::Object { expects_key, .. }) = stack.last_mut() {
                    *expects_key = true;
                }
            }
            '"' => {
                let mut key = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            key.push(c);
                            key.extend(chars.next());
                        }
                        '\n' => line += 1,
                        other => key.push(other),
                    }
                }
                if let Some(Frame::Object { keys, expects_key }) = stack.last_mut()
                    && *expects_key
                {
                    *expects_key = false;
                    if !keys.insert(key.clone()) {
                        repeated.push((key, line));
                    }
                }
            }
            _ => {}
        }
    }
    repeated
}

/// Reads a document from its JSON text: as [`read`], with a warning for each key an
/// object gives twice (the last one is kept, as the seed system's reader did).
pub fn read_text(text: &str) -> Result<Imported, String> {
    let document: Value =
        serde_json::from_str(text).map_err(|err| format!("the document is not JSON: {err}"))?;
    let mut imported = read(&document)?;
    let mut warnings = repeated_key_warnings(&repeated_keys(text));
    warnings.append(&mut imported.warnings);
    imported.warnings = warnings;
    Ok(imported)
}

/// A warning for each key a document gave twice.
pub fn repeated_key_warnings(repeated: &[(String, usize)]) -> Vec<Problem> {
    let mut problems = Problems::new();
    for (key, line) in repeated {
        problems.warning(
            "duplicate_key",
            None,
            format!("the document gives the key `{key}` twice in one object (line {line}); the last one is kept, as the seed system's reader did"),
        );
    }
    problems.into_vec()
}

/// Disables nodes whose kind cannot run here, with a warning for each.
fn finish(
    mut graph: Graph,
    slug: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
) -> Result<Imported, String> {
    let mut problems = Problems::new();
    disable_unrunnable(&mut graph, &mut problems);
    Ok(Imported {
        graph,
        warnings: problems.into_vec(),
        slug,
        display_name,
        description,
    })
}

fn disable_unrunnable(graph: &mut Graph, problems: &mut Problems) {
    for node in &mut graph.nodes {
        // A node whose own configuration is broken (an editor placeholder, an empty
        // predicate) is kept disabled, so the rest of the workflow still imports.
        if let Some(kind) = Kind::parse(&node.kind)
            && node.is_enabled
        {
            let mut own = Problems::new();
            nodes::check(kind, &node.parameters, &mut own);
            if let Some(first) = own
                .as_slice()
                .iter()
                .find(|p| p.severity == super::problems::Severity::Error)
            {
                let detail = match &first.field {
                    Some(field) => format!("{field}: {}", first.message),
                    None => first.message.clone(),
                };
                node.is_enabled = false;
                problems.at_node(Some(&node.slug));
                problems.warning(
                    "node_disabled",
                    first.field.as_deref(),
                    format!("the node was imported disabled because its configuration has errors ({detail}); fix it, then enable it"),
                );
            }
            continue;
        }
        if Kind::parse(&node.kind).is_none() && node.is_enabled {
            node.is_enabled = false;
            problems.at_node(Some(&node.slug));
            problems.warning(
                "node_disabled",
                Some("kind"),
                format!(
                    "`{}` nodes cannot run in this version yet; the node was imported disabled",
                    node.kind
                ),
            );
        }
    }
    problems.at_node(None);
}

/// Unquotes a CEL string literal (`"text"` or `'text'`), if the whole expression is one.
fn cel_string_literal(source: &str) -> Option<String> {
    let source = source.trim();
    let quote = source.chars().next()?;
    if !(quote == '"' || quote == '\'') || source.len() < 2 || !source.ends_with(quote) {
        return None;
    }
    let inner = &source[1..source.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return None; // an unescaped quote: several literals, e.g. concatenation
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'u' => {
                let code: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&code, 16).ok().filter(|c| *c != 0)?;
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// An Agent Builder expression object `{"expression": "...", "format": "cel"}` → its source.
pub(crate) fn expression(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Object(o) => o
            .get("expression")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// A text field: a plain string when the expression is one literal, else a `{{ }}` template.
pub(crate) fn text_from_expression(value: Option<&Value>) -> Option<String> {
    let source = expression(value)?;
    Some(cel_string_literal(&source).unwrap_or_else(|| format!("{{{{ {source} }}}}")))
}

fn position(ui: &Value, id: &str) -> Option<Value> {
    let p = ui.get("positionsByNodeId")?.get(id)?;
    let number = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    Some(json!({"x": number(p.get("x")?)?, "y": number(p.get("y")?)?}))
}

/// An Agent Builder node being converted by its kind
/// ([`NodeKind::import_agent_builder`](nodes::NodeKind::import_agent_builder)).
pub(crate) struct AbNode<'i, 'a> {
    import: &'i mut AbImport<'a>,
    pub slug: String,
    /// Its Agent Builder id.
    pub id: String,
    /// Its `config`.
    pub config: Value,
    /// What the editor kept about it (`dataByNodeId`).
    pub data: Value,
    /// Our parameters, built by the kind.
    pub params: Map<String, Value>,
    /// Its output ports, each mapped to our edge label (empty: the default edge).
    pub ports: HashMap<String, String>,
}

impl AbNode<'_, '_> {
    pub fn warn(&mut self, code: &'static str, message: String) {
        let slug = self.slug.clone();
        self.import.warn(&slug, code, message);
    }

    /// Imports a loop's body (`{nodes, edges, start_node_id}`) inside this node, with the
    /// `loop` edge from the node into the body's first node.
    pub fn body(&mut self, body: &Value) -> Result<(), String> {
        let list = |key: &str| {
            body.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let slug = self.slug.clone();
        self.import
            .scope(&list("nodes"), &list("edges"), Some(&slug))?;
        if let Some(entry) = body
            .get("start_node_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            match self.import.slugs.get(entry).cloned() {
                Some(entry_slug) => self.import.graph.edges.push(Edge {
                    source: slug,
                    target: entry_slug,
                    condition: Some("loop".into()),
                    metadata: Map::new(),
                    extra: Map::new(),
                }),
                None => {
                    return Err(format!(
                        "the loop `{}` starts at `{entry}`, which is not in its body",
                        self.id
                    ));
                }
            }
        }
        Ok(())
    }
}

struct AbImport<'a> {
    ui: &'a Value,
    slugs: HashMap<String, String>,
    used: HashSet<String>,
    graph: Graph,
    problems: Problems,
}

impl AbImport<'_> {
    fn slug_for(&mut self, id: &str, label: Option<&str>) -> String {
        if let Some(slug) = self.slugs.get(id) {
            return slug.clone();
        }
        let base = label
            .map(slugify)
            .filter(|s| s != "workflow")
            .unwrap_or_else(|| slugify(id));
        let mut slug = base.clone();
        let mut n = 2;
        while !self.used.insert(slug.clone()) {
            slug = format!("{base}-{n}");
            n += 1;
        }
        self.slugs.insert(id.to_string(), slug.clone());
        slug
    }

    fn warn(&mut self, slug: &str, code: &'static str, message: String) {
        self.problems.at_node(Some(slug));
        self.problems.warning(code, None, message);
        self.problems.at_node(None);
    }

    /// Converts a scope's nodes and edges (the top level, or a While body).
    fn scope(
        &mut self,
        nodes: &[Value],
        edges: &[Value],
        parent: Option<&str>,
    ) -> Result<(), String> {
        // Slugs first, so edges and loop bodies can refer to any node of the scope.
        for node in nodes {
            let id = node
                .get("id")
                .and_then(Value::as_str)
                .ok_or("an Agent Builder node has no `id`")?;
            if self.slugs.contains_key(id) {
                return Err(format!("two nodes have the id `{id}`"));
            }
            let label = node.get("label").and_then(Value::as_str);
            self.slug_for(id, label);
        }
        let mut ports: HashMap<String, HashMap<String, String>> = HashMap::new();
        for node in nodes {
            let (converted, node_ports) = self.node(node)?;
            if let Some(parent) = parent {
                let mut converted = converted;
                converted.parent_slug = Some(parent.to_string());
                self.graph.nodes.push(converted);
            } else {
                self.graph.nodes.push(converted);
            }
            let id = node["id"].as_str().unwrap_or_default().to_string();
            ports.insert(id, node_ports);
        }
        for edge in edges {
            let source = edge
                .get("source_node_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let target = edge
                .get("target_node_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let port = edge
                .get("source_port_id")
                .and_then(Value::as_str)
                .unwrap_or("out");
            let (Some(source_slug), Some(target_slug)) = (
                self.slugs.get(source).cloned(),
                self.slugs.get(target).cloned(),
            ) else {
                self.problems.warning("edge_dropped", None, format!("an edge from `{source}` to `{target}` names a node that does not exist in its scope; it was left out"));
                continue;
            };
            let condition = match ports.get(source).and_then(|p| p.get(port)) {
                Some(label) => Some(label.clone()).filter(|l| !l.is_empty()),
                None => {
                    self.warn(&source_slug, "unknown_port", format!("output port `{port}` is not known for this node; the edge was kept unlabelled"));
                    None
                }
            };
            self.graph.edges.push(Edge {
                source: source_slug,
                target: target_slug,
                condition,
                metadata: Map::new(),
                extra: Map::new(),
            });
        }
        Ok(())
    }

    /// One node; returns it with its output ports mapped to our edge labels.
    fn node(&mut self, node: &Value) -> Result<(Node, HashMap<String, String>), String> {
        let id = node["id"].as_str().unwrap_or_default().to_string();
        let slug = self.slugs[&id].clone();
        let node_type = node
            .get("node_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let label = node
            .get("label")
            .and_then(Value::as_str)
            .map(str::to_string);
        let config = node.get("config").cloned().unwrap_or(json!({}));
        let data = self
            .ui
            .get("dataByNodeId")
            .and_then(|d| d.get(&id))
            .cloned()
            .unwrap_or(Value::Null);
        let mut metadata = Map::new();
        metadata.insert("agent_builder_id".into(), json!(id));
        if let Some(position) = position(self.ui, &id) {
            metadata.insert("position".into(), position);
        }
        let mut ports: HashMap<String, String> = HashMap::new();
        let mut params = Map::new();
        let name = node_type
            .trim_start_matches("builtins.")
            .trim_start_matches("tool.");
        let kind = match nodes::REGISTRY
            .iter()
            .find(|k| k.behaviour().agent_builder_types().contains(&name))
        {
            Some(kind) => {
                let mut converted = AbNode {
                    import: self,
                    slug: slug.clone(),
                    id: id.clone(),
                    config,
                    data,
                    params,
                    ports,
                };
                kind.behaviour().import_agent_builder(&mut converted)?;
                (params, ports) = (converted.params, converted.ports);
                kind.as_str()
            }
            // Kinds later parts of the platform add arrive disabled with their settings.
            None if name == "Guardrails" => {
                ports.insert("on_pass".into(), "pass".into());
                ports.insert("on_fail".into(), "fail".into());
                ports.insert("on_error".into(), "error".into());
                params = config.as_object().cloned().unwrap_or_default();
                "guardrails"
            }
            None => {
                params = config.as_object().cloned().unwrap_or_default();
                self.warn(&slug, "unknown_kind", format!("Agent Builder node type `{node_type}` is not known; imported disabled as `{}`", name.to_lowercase()));
                ""
            }
        };
        let kind = if kind.is_empty() {
            node_type
                .trim_start_matches("builtins.")
                .trim_start_matches("tool.")
                .to_lowercase()
        } else {
            kind.to_string()
        };
        let converted = Node {
            slug,
            kind,
            display_name: label,
            parent_slug: None,
            is_enabled: true,
            parameters: params,
            metadata,
            agent_key: None,
            extra: Map::new(),
        };
        Ok((converted, ports))
    }
}

/// Converts an Agent Builder workflow.
fn agent_builder(object: &Map<String, Value>) -> Result<Imported, String> {
    let nodes = object
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("an Agent Builder workflow needs `nodes`")?;
    let edges = object
        .get("edges")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let null = Value::Null;
    let ui = object.get("ui_metadata").unwrap_or(&null);
    let mut import = AbImport {
        ui,
        slugs: HashMap::new(),
        used: HashSet::new(),
        graph: Graph::default(),
        problems: Problems::new(),
    };
    import.scope(nodes, &edges, None)?;
    if let Some(start) = object.get("start_node_id").and_then(Value::as_str) {
        let is_start = import
            .slugs
            .get(start)
            .and_then(|slug| import.graph.node(slug))
            .is_some_and(|n| nodes::role_of(n) == Some(nodes::Role::Entry));
        if !is_start {
            return Err(format!(
                "`start_node_id` names `{start}`, which is not a Start node"
            ));
        }
    }
    for ui_node in ui
        .get("uiNodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if ui_node.get("type").and_then(Value::as_str) != Some("note") {
            continue;
        }
        let id = ui_node.get("id").and_then(Value::as_str).unwrap_or("note");
        let slug = import.slug_for(id, Some("note"));
        let mut metadata = Map::new();
        metadata.insert("agent_builder_id".into(), json!(id));
        if let Some(position) = position(ui, id) {
            metadata.insert("position".into(), position);
        }
        let text = ui_node
            .get("data")
            .and_then(|d| d.get("text"))
            .cloned()
            .unwrap_or(json!(""));
        import.graph.nodes.push(Node {
            slug,
            kind: nodes::note::KIND.as_str().into(),
            display_name: None,
            parent_slug: None,
            is_enabled: true,
            parameters: Map::from_iter([("text".to_string(), text)]),
            metadata,
            agent_key: None,
            extra: Map::new(),
        });
    }
    import.graph.state_schema = object
        .get("state_variable_json_schema")
        .filter(|v| !v.is_null())
        .cloned();
    import.graph.input_schema = object
        .get("input_variable_json_schema")
        .filter(|v| !v.is_null())
        .cloned();
    let AbImport {
        mut graph,
        mut problems,
        ..
    } = import;
    disable_unrunnable(&mut graph, &mut problems);
    let name = object
        .get("name")
        .or_else(|| object.get("label"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Imported {
        slug: name.as_deref().map(slugify),
        display_name: name,
        description: None,
        graph,
        warnings: problems.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_given_twice_are_found_with_their_line() {
        let text = "{\"a\": 1,\n \"b\": {\"a\": 2, \"a\": 3},\n \"c\": [{\"x\": 1}, {\"x\": 2}],\n \"s\": \"{\\\"a\\\": 1, \\\"a\\\": 2}\",\n \"a\": 4}";
        assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
        assert_eq!(
            repeated_keys(text),
            [("a".to_string(), 2), ("a".to_string(), 5)]
        );
        let imported = read_text(
            r#"{"nodes": [{"slug": "start", "kind": "start", "kind": "start"}], "edges": []}"#,
        )
        .unwrap();
        assert_eq!(imported.warnings[0].code, "duplicate_key");
    }

    #[test]
    fn cel_literals_unquote() {
        assert_eq!(
            cel_string_literal(r#""line 1\n\nline \"2\"""#).as_deref(),
            Some("line 1\n\nline \"2\"")
        );
        assert_eq!(cel_string_literal("'gpt-5'").as_deref(), Some("gpt-5"));
        assert_eq!(
            cel_string_literal(r#""\u00e9t\u00e9""#).as_deref(),
            Some("été")
        );
        assert_eq!(cel_string_literal(r#""a" + state.x + "b""#), None);
        assert_eq!(cel_string_literal("state.x"), None);
    }

    #[test]
    fn unknown_documents_are_refused() {
        assert!(read(&json!([1, 2])).is_err());
        assert!(read(&json!({"hello": "world"})).is_err());
    }
}
