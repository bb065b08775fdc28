//! Graph validation: every problem at once, each with its node, field and a stable code.
//!
//! Only enabled nodes take part in the structural checks; edges touching disabled nodes
//! are ignored, as in the seed system. Cycles are allowed (loops through `while` or back
//! edges); what must hold is that every `end` is reachable from the `start`.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{
    graph::Graph,
    nodes::{self, Kind, PLANNED_KINDS, Place, Role},
    problems::{Problem, Problems},
    schema,
};

/// The largest graph accepted; keeps validation and runs bounded.
pub const MAX_NODES: usize = 1_000;
pub const MAX_EDGES: usize = 5_000;

/// Validates a graph; returns every problem found, errors and warnings.
pub fn validate(graph: &Graph) -> Vec<Problem> {
    let mut problems = Problems::new();
    if let Some(configs) = check_nodes(graph, &mut problems) {
        check_structure(graph, &configs, &mut problems);
    }
    problems.at_node(None);
    if let Some(state_schema) = &graph.state_schema {
        schema::check_state_schema(state_schema, &mut problems);
    }
    if let Some(input_schema) = &graph.input_schema {
        schema::check_schema(input_schema, "input_schema", &mut problems);
    }
    problems.into_vec()
}

/// Per-node checks; returns the typed configs of enabled nodes by slug.
fn check_nodes(graph: &Graph, problems: &mut Problems) -> Option<HashMap<String, Kind>> {
    let mut configs = HashMap::new();
    let mut seen = HashSet::new();
    if graph.nodes.is_empty() {
        problems.error("empty_graph", None, "the graph has no nodes");
        return None;
    }
    if graph.nodes.len() > MAX_NODES || graph.edges.len() > MAX_EDGES {
        problems.error(
            "graph_too_large",
            None,
            format!("a graph may have at most {MAX_NODES} nodes and {MAX_EDGES} edges"),
        );
        return None;
    }
    for (index, node) in graph.nodes.iter().enumerate() {
        let slug = node.slug.trim();
        if slug.is_empty() {
            problems.at_node(None);
            problems.error(
                "empty_slug",
                Some(&format!("nodes[{index}].slug")),
                "every node needs a slug",
            );
            continue;
        }
        problems.at_node(Some(slug));
        for key in node.extra.keys() {
            problems.warning(
                "unknown_key",
                Some(key),
                format!("`{key}` is not a node field; it is kept but ignored (settings go in `parameters`, editor data in `metadata`)"),
            );
        }
        if slug != node.slug {
            problems.error(
                "invalid_slug",
                Some("slug"),
                "a slug cannot start or end with spaces",
            );
        }
        if !seen.insert(slug.to_string()) {
            problems.error(
                "duplicate_slug",
                Some("slug"),
                format!("two nodes have the slug `{slug}`"),
            );
            continue;
        }
        let Some(kind) = Kind::parse(&node.kind) else {
            let planned = PLANNED_KINDS.contains(&node.kind.trim().to_ascii_lowercase().as_str());
            match (planned, node.is_enabled) {
                (true, true) => problems.error(
                    "unsupported_kind",
                    Some("kind"),
                    format!(
                        "`{}` nodes cannot run in this version yet; disable the node to keep it",
                        node.kind
                    ),
                ),
                (true, false) => problems.warning(
                    "unsupported_kind",
                    Some("kind"),
                    format!(
                        "`{}` nodes cannot run in this version yet; the node stays disabled",
                        node.kind
                    ),
                ),
                (false, true) => problems.error(
                    "unknown_kind",
                    Some("kind"),
                    format!("`{}` is not a kind of node", node.kind),
                ),
                (false, false) => problems.warning(
                    "unknown_kind",
                    Some("kind"),
                    format!("`{}` is not a kind of node; it stays disabled", node.kind),
                ),
            }
            continue;
        };
        if node.is_enabled {
            nodes::check(kind, &node.parameters, problems);
            configs.insert(slug.to_string(), kind);
        } else {
            // A disabled node never runs: its configuration problems do not block a save.
            let mut own = Problems::new();
            own.at_node(Some(slug));
            nodes::check(kind, &node.parameters, &mut own);
            problems.extend(
                own.into_vec()
                    .into_iter()
                    .map(Problem::downgraded)
                    .collect(),
            );
        }
    }
    Some(configs)
}

fn check_structure(graph: &Graph, configs: &HashMap<String, Kind>, problems: &mut Problems) {
    problems.at_node(None);
    let all_slugs: HashSet<&str> = graph.nodes.iter().map(|n| n.slug.as_str()).collect();
    let kind_of = |slug: &str| configs.get(slug).copied();
    let role_of = |slug: &str| kind_of(slug).map(Kind::role);

    // Edges between enabled nodes, after checking that both ends exist.
    let mut outgoing: HashMap<&str, Vec<&super::graph::Edge>> = HashMap::new();
    // Disabled nodes are bypassed at run time, so paths run through them.
    let mut passable: HashMap<&str, Vec<&super::graph::Edge>> = HashMap::new();
    let mut incoming: HashMap<&str, usize> = HashMap::new();
    for (index, edge) in graph.edges.iter().enumerate() {
        let field = format!("edges[{index}]");
        for key in edge.extra.keys() {
            problems.warning(
                "unknown_key",
                Some(&format!("{field}.{key}")),
                format!("`{key}` is not an edge field; it is kept but ignored (a branch label is `condition`)"),
            );
        }
        let mut ok = true;
        for (end, slug) in [("source", &edge.source), ("target", &edge.target)] {
            if !all_slugs.contains(slug.as_str()) {
                problems.error(
                    "unknown_edge_node",
                    Some(&format!("{field}.{end}")),
                    format!("the edge's {end} `{slug}` is not a node"),
                );
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        passable.entry(edge.source.as_str()).or_default().push(edge);
        // Counted per enabled end: an edge to or from a disabled node still carries the
        // path, since disabled nodes are bypassed.
        if kind_of(&edge.source).is_some() {
            outgoing.entry(edge.source.as_str()).or_default().push(edge);
        }
        if kind_of(&edge.target).is_some() {
            *incoming.entry(edge.target.as_str()).or_default() += 1;
        }
    }

    // Exactly one enabled start, with no incoming edge.
    let starts: Vec<&str> = configs
        .iter()
        .filter(|(_, k)| k.role() == Role::Entry)
        .map(|(s, _)| s.as_str())
        .collect();
    match starts.as_slice() {
        [] => problems.error(
            "missing_start",
            None,
            "the graph needs one enabled `start` node",
        ),
        [start] => {
            if incoming.get(start).copied().unwrap_or(0) > 0 {
                problems.error_on(
                    start,
                    "start_has_incoming",
                    None,
                    "no edge may lead into the start node",
                );
            }
        }
        many => {
            let mut many = many.to_vec();
            many.sort_unstable();
            problems.error(
                "multiple_starts",
                None,
                format!(
                    "only one enabled start is allowed, found {}",
                    many.join(", ")
                ),
            );
        }
    }

    let mut slugs: Vec<&String> = configs.keys().collect();
    slugs.sort();
    let mut claimed_joins: HashMap<String, String> = HashMap::new();
    let index = graph.index();
    for slug in slugs {
        let kind = configs[slug];
        let out = outgoing
            .get(slug.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(node) = index.node(slug) else {
            continue;
        };
        let mut place = Place {
            slug,
            params: &node.parameters,
            out,
            incoming: incoming.get(slug.as_str()).copied().unwrap_or(0),
            slugs: &all_slugs,
            role_of: &role_of,
            joins: &mut claimed_joins,
        };
        kind.behaviour().check_edges(&mut place, problems);
    }
    for (slug, kind) in configs {
        if kind.role() == Role::Join && !claimed_joins.contains_key(slug) {
            problems.error_on(
                slug,
                "orphan_join",
                None,
                "no parallel_split names this join",
            );
        }
    }

    // A node that routes its failures needs somewhere to route them.
    for node in graph
        .nodes
        .iter()
        .filter(|n| n.is_enabled && configs.contains_key(&n.slug))
    {
        let routes = nodes::common::ErrorHandling::of(&node.parameters)
            .is_ok_and(|h| h.on_error == nodes::common::OnError::Route);
        let has_error_edge = graph.edges.iter().any(|e| {
            e.source == node.slug
                && e.condition
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(nodes::common::ERROR_LABEL))
        });
        if routes && !has_error_edge {
            problems.error_on(
                &node.slug,
                "missing_error_edge",
                Some("parameters.on_error"),
                "`on_error: route` needs an edge labelled `error`",
            );
        }
    }

    check_loops(graph, configs, problems);
    check_reachability(configs, &outgoing, &passable, &starts, problems);
}

impl Problems {
    pub(crate) fn warning_on(&mut self, node: &str, code: &'static str, message: &str) {
        self.at_node(Some(node));
        self.warning(code, None, message);
        self.at_node(None);
    }
}

/// Branch labels of one node: unique, from the allowed set, at most one default.
pub(crate) fn check_labels(
    slug: &str,
    out: &[&super::graph::Edge],
    allowed: &[&str],
    problems: &mut Problems,
) {
    let mut seen = HashSet::new();
    for edge in out {
        let label = edge.condition.as_deref().map(str::to_lowercase);
        let key = label.clone().unwrap_or_else(|| "default".to_string());
        if !seen.insert(key.clone()) {
            let message = match &label {
                Some(label) => format!("two edges have the label `{label}`"),
                None => "two edges have no label (at most one default edge)".to_string(),
            };
            problems.error_on(slug, "duplicate_branch_label", None, message);
        }
        if let Some(label) = &label
            && !allowed.is_empty()
            && !allowed.contains(&label.as_str())
            && label != "default"
            && label != nodes::common::ERROR_LABEL
        {
            problems.error_on(
                slug,
                "unknown_branch_label",
                None,
                format!(
                    "the edge to `{}` has the label `{label}`, expected one of: {}",
                    edge.target,
                    allowed.join(", ")
                ),
            );
        }
    }
    if out.is_empty() {
        problems.error_on(
            slug,
            "missing_branch",
            None,
            "this node needs outgoing edges",
        );
    }
}

/// `parent_slug` names an enabled `while`; edges into a loop body come from the loop.
fn check_loops(graph: &Graph, configs: &HashMap<String, Kind>, problems: &mut Problems) {
    let parent: HashMap<&str, &str> = graph
        .nodes
        .iter()
        .filter_map(|n| n.parent_slug.as_deref().map(|p| (n.slug.as_str(), p)))
        .collect();
    // Each node's enclosing loops, innermost first, computed once. A chain that comes back
    // to the node itself (a loop inside its own body) is cut and reported.
    let mut ancestors: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in &graph.nodes {
        let mut chain = Vec::new();
        let mut cursor = parent.get(node.slug.as_str()).copied();
        while let Some(current) = cursor {
            if current == node.slug || chain.contains(&current) {
                if node.is_enabled {
                    problems.error_on(
                        &node.slug,
                        "invalid_parent",
                        Some("parent_slug"),
                        "loops cannot contain themselves",
                    );
                }
                break;
            }
            chain.push(current);
            cursor = parent.get(current).copied();
        }
        ancestors.insert(node.slug.as_str(), chain);
    }
    for node in graph.nodes.iter().filter(|n| n.is_enabled) {
        let Some(parent_slug) = node.parent_slug.as_deref() else {
            continue;
        };
        if configs.get(parent_slug).map(|k| k.role()) != Some(Role::Loop) {
            problems.error_on(
                &node.slug,
                "invalid_parent",
                Some("parent_slug"),
                format!("`{parent_slug}` is not an enabled while loop"),
            );
        }
    }
    let mut has_body: HashSet<&str> = HashSet::new();
    for node in graph.nodes.iter().filter(|n| n.is_enabled) {
        if let Some(parent_slug) = node.parent_slug.as_deref() {
            has_body.insert(parent_slug);
        }
    }
    let mut loops: Vec<&String> = configs
        .iter()
        .filter(|(_, k)| k.role() == Role::Loop)
        .map(|(s, _)| s)
        .collect();
    loops.sort();
    for slug in loops {
        if !has_body.contains(slug.as_str()) {
            problems.warning_on(slug, "empty_loop", "this loop has no body nodes");
        }
    }
    // An edge enters a loop's body from outside when the loop encloses its target but
    // neither its source nor is its source.
    let empty = Vec::new();
    for edge in &graph.edges {
        if !configs.contains_key(&edge.source) || !configs.contains_key(&edge.target) {
            continue;
        }
        let source_loops = ancestors.get(edge.source.as_str()).unwrap_or(&empty);
        for loop_slug in ancestors.get(edge.target.as_str()).unwrap_or(&empty) {
            if *loop_slug != edge.source && !source_loops.contains(loop_slug) {
                problems.error_on(
                    &edge.target,
                    "edge_into_loop_body",
                    None,
                    format!("`{}` enters the body of loop `{loop_slug}` from outside; only the loop may lead into its body", edge.source),
                );
            }
        }
    }
}

/// Every `end` reachable from the start; unreachable nodes are warned about.
fn check_reachability(
    configs: &HashMap<String, Kind>,
    outgoing: &HashMap<&str, Vec<&super::graph::Edge>>,
    passable: &HashMap<&str, Vec<&super::graph::Edge>>,
    starts: &[&str],
    problems: &mut Problems,
) {
    let [start] = starts else { return };
    let mut reached: HashSet<&str> = HashSet::from([*start]);
    let mut queue = VecDeque::from([*start]);
    while let Some(slug) = queue.pop_front() {
        for edge in passable.get(slug).map(Vec::as_slice).unwrap_or_default() {
            if reached.insert(edge.target.as_str()) {
                queue.push_back(edge.target.as_str());
            }
        }
    }
    let mut slugs: Vec<&String> = configs.keys().collect();
    slugs.sort();
    let mut has_terminal = false;
    for slug in slugs {
        let role = configs[slug].role();
        let is_reached = reached.contains(slug.as_str());
        let is_terminal = outgoing.get(slug.as_str()).is_none_or(Vec::is_empty);
        if is_reached && is_terminal {
            has_terminal = true;
        }
        match (role, is_reached) {
            (Role::Exit, false) => problems.error_on(
                slug,
                "end_unreachable",
                None,
                "this end cannot be reached from the start",
            ),
            (Role::Annotation | Role::Entry, _) | (_, true) => {}
            (_, false) => problems.warning_on(
                slug,
                "unreachable_node",
                "this node cannot be reached from the start",
            ),
        }
    }
    if !has_terminal {
        problems.error(
            "no_terminal",
            None,
            "no reachable node ends the run: every path loops forever",
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::workflows::problems::Severity;

    /// start → (middle…) → end, with extra nodes and edges.
    fn graph(nodes: Value, edges: Value) -> Graph {
        Graph::from_json(json!({"nodes": nodes, "edges": edges})).unwrap()
    }

    fn codes(g: &Graph) -> Vec<(&'static str, Option<String>)> {
        validate(g).into_iter().map(|p| (p.code, p.node)).collect()
    }

    fn errors(g: &Graph) -> Vec<&'static str> {
        validate(g)
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.code)
            .collect()
    }

    fn warnings(g: &Graph) -> Vec<&'static str> {
        validate(g)
            .into_iter()
            .filter(|p| p.severity == Severity::Warning)
            .map(|p| p.code)
            .collect()
    }

    fn start() -> Value {
        json!({"slug": "start", "kind": "start"})
    }

    fn end() -> Value {
        json!({"slug": "end", "kind": "end"})
    }

    #[test]
    fn unknown_keys_are_kept_and_warned_about() {
        let graph = Graph::from_json(json!({
            "nodes": [{"slug": "start", "kind": "start", "colour": "red"}, {"slug": "end", "kind": "end"}],
            "edges": [{"source": "start", "target": "end", "weight": 1}]
        }))
        .unwrap();
        let problems = validate(&graph);
        let unknown: Vec<(Option<&str>, Option<&str>)> = problems
            .iter()
            .filter(|p| p.code == "unknown_key")
            .map(|p| (p.node.as_deref(), p.field.as_deref()))
            .collect();
        assert_eq!(
            unknown,
            [
                (Some("start"), Some("colour")),
                (None, Some("edges[0].weight"))
            ]
        );
        assert!(problems.iter().all(|p| p.severity == Severity::Warning));
    }

    #[test]
    fn a_simple_graph_is_valid() {
        let g = graph(
            json!([start(), {"slug": "hi", "kind": "assistant_message", "parameters": {"message": "Hi {{ user.email }}"}}, end()]),
            json!([{"source": "start", "target": "hi"}, {"source": "hi", "target": "end"}]),
        );
        assert_eq!(codes(&g), []);
        assert_eq!(codes(&Graph::minimal()), []);
    }

    /// Each rule, with a graph that breaks it and the code it must report.
    #[test]
    fn every_rule_has_a_failing_example() {
        let cases: Vec<(&str, Graph)> = vec![
            ("empty_graph", graph(json!([]), json!([]))),
            (
                "empty_slug",
                graph(
                    json!([start(), end(), {"slug": "", "kind": "watch"}]),
                    json!([{"source": "start", "target": "end"}]),
                ),
            ),
            (
                "duplicate_slug",
                graph(
                    json!([start(), end(), {"slug": "end", "kind": "end"}]),
                    json!([{"source": "start", "target": "end"}]),
                ),
            ),
            (
                "unknown_kind",
                graph(
                    json!([start(), end(), {"slug": "x", "kind": "teleport"}]),
                    json!([{"source": "start", "target": "end"}]),
                ),
            ),
            (
                "unsupported_kind",
                graph(
                    json!([start(), end(), {"slug": "x", "kind": "computer_use"}]),
                    json!([{"source": "start", "target": "end"}]),
                ),
            ),
            ("missing_start", graph(json!([end()]), json!([]))),
            (
                "multiple_starts",
                graph(
                    json!([start(), {"slug": "s2", "kind": "start"}, end()]),
                    json!([{"source": "start", "target": "end"}, {"source": "s2", "target": "end"}]),
                ),
            ),
            (
                "start_has_incoming",
                graph(
                    json!([start(), {"slug": "w", "kind": "assistant_message", "parameters": {"message": "x"}}, end()]),
                    json!([{"source": "start", "target": "w"}, {"source": "w", "target": "start"}, {"source": "w", "target": "end"}]),
                ),
            ),
            (
                "end_has_outgoing",
                graph(
                    json!([start(), end(), {"slug": "end2", "kind": "end"}]),
                    json!([{"source": "start", "target": "end"}, {"source": "end", "target": "end2"}]),
                ),
            ),
            (
                "unknown_edge_node",
                graph(
                    json!([start(), end()]),
                    json!([{"source": "start", "target": "end"}, {"source": "start", "target": "nowhere"}]),
                ),
            ),
            (
                "duplicate_branch_label",
                graph(
                    json!([start(), {"slug": "c", "kind": "condition", "parameters": {"path": "state.x"}}, end(), {"slug": "end2", "kind": "end"}]),
                    json!([{"source": "start", "target": "c"}, {"source": "c", "target": "end", "condition": "true"}, {"source": "c", "target": "end2", "condition": "true"}]),
                ),
            ),
            (
                "unknown_branch_label",
                graph(
                    json!([start(), {"slug": "c", "kind": "condition", "parameters": {"cases": [{"label": "yes", "predicate": "state.x"}]}}, end()]),
                    json!([{"source": "start", "target": "c"}, {"source": "c", "target": "end", "condition": "maybe"}]),
                ),
            ),
            (
                "missing_branch",
                graph(
                    json!([start(), {"slug": "c", "kind": "condition", "parameters": {"path": "state.x"}}, end()]),
                    json!([{"source": "start", "target": "c"}, {"source": "start", "target": "end"}]),
                ),
            ),
            (
                "split_branch_mismatch",
                graph(
                    json!([start(), {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "join", "branches": ["a", "b"]}},
                       {"slug": "join", "kind": "parallel_join"}, end()]),
                    json!([{"source": "start", "target": "split"}, {"source": "split", "target": "join"}, {"source": "join", "target": "end"}]),
                ),
            ),
            (
                "invalid_join",
                graph(
                    json!([start(), {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "end", "branches": ["a", "b"]}},
                       {"slug": "m1", "kind": "watch"}, {"slug": "m2", "kind": "watch"}, end()]),
                    json!([{"source": "start", "target": "split"}, {"source": "split", "target": "m1"}, {"source": "split", "target": "m2"},
                       {"source": "m1", "target": "end"}, {"source": "m2", "target": "end"}]),
                ),
            ),
            (
                "orphan_join",
                graph(
                    json!([start(), {"slug": "join", "kind": "parallel_join"}, end()]),
                    json!([{"source": "start", "target": "join"}, {"source": "start", "target": "end"}, {"source": "join", "target": "end"}]),
                ),
            ),
            (
                "join_incoming",
                graph(
                    json!([start(), {"slug": "join", "kind": "parallel_join"}, end()]),
                    json!([{"source": "start", "target": "join"}, {"source": "join", "target": "end"}]),
                ),
            ),
            (
                "watch_incoming",
                graph(
                    json!([start(), {"slug": "w", "kind": "watch"}, end()]),
                    json!([{"source": "start", "target": "end"}, {"source": "w", "target": "end"}]),
                ),
            ),
            (
                "invalid_parent",
                graph(
                    json!([start(), {"slug": "w", "kind": "watch", "parent_slug": "start"}, end()]),
                    json!([{"source": "start", "target": "w"}, {"source": "w", "target": "end"}]),
                ),
            ),
            (
                "edge_into_loop_body",
                graph(
                    json!([start(), {"slug": "loop", "kind": "while", "parameters": {"condition": "state.n < 3"}},
                       {"slug": "body", "kind": "assistant_message", "parent_slug": "loop", "parameters": {"message": "again"}}, end()]),
                    json!([{"source": "start", "target": "body"}, {"source": "start", "target": "loop"}, {"source": "loop", "target": "body", "condition": "loop"},
                       {"source": "loop", "target": "end", "condition": "exit"}]),
                ),
            ),
            (
                "end_unreachable",
                graph(
                    json!([start(), end(), {"slug": "end2", "kind": "end"}]),
                    json!([{"source": "start", "target": "end"}]),
                ),
            ),
            (
                "no_terminal",
                graph(
                    json!([start(), {"slug": "a", "kind": "assistant_message", "parameters": {"message": "x"}},
                                         {"slug": "b", "kind": "assistant_message", "parameters": {"message": "y"}}]),
                    json!([{"source": "start", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}]),
                ),
            ),
            (
                "invalid_expression",
                graph(
                    json!([start(), {"slug": "c", "kind": "condition", "parameters": {"path": "state.x >"}}, end()]),
                    json!([{"source": "start", "target": "c"}, {"source": "c", "target": "end"}]),
                ),
            ),
            (
                "invalid_template",
                graph(
                    json!([start(), {"slug": "m", "kind": "assistant_message", "parameters": {"message": "Hi {{ user.email"}}, end()]),
                    json!([{"source": "start", "target": "m"}, {"source": "m", "target": "end"}]),
                ),
            ),
            (
                "invalid_parameter",
                graph(
                    json!([start(), {"slug": "l", "kind": "while", "parameters": {"max_iterations": -1}}, end()]),
                    json!([{"source": "start", "target": "l"}, {"source": "l", "target": "end"}]),
                ),
            ),
            (
                "invalid_state_target",
                graph(
                    json!([start(), {"slug": "s", "kind": "state", "parameters": {"state": [{"target": "x", "expression": "1"}]}}, end()]),
                    json!([{"source": "start", "target": "s"}, {"source": "s", "target": "end"}]),
                ),
            ),
            (
                "invalid_json_schema",
                Graph {
                    state_schema: Some(
                        json!({"type": "object", "properties": {"n": {"type": "integr"}}}),
                    ),
                    ..Graph::minimal()
                },
            ),
        ];
        for (code, g) in cases {
            let found = errors(&g);
            assert!(found.contains(&code), "expected `{code}`, found {found:?}");
        }
    }

    #[test]
    fn warnings_do_not_block() {
        let g = graph(
            json!([start(), end(), {"slug": "lonely", "kind": "assistant_message", "parameters": {"message": "never shown"}},
                   {"slug": "loop", "kind": "while", "parameters": {"condition": "true"}},
                   {"slug": "odd", "kind": "assistant_message", "parameters": {"message": "x", "colour": "red"}}]),
            json!([{"source": "start", "target": "odd"}, {"source": "odd", "target": "loop"}, {"source": "loop", "target": "end"}, {"source": "lonely", "target": "end"}]),
        );
        assert_eq!(errors(&g), Vec::<&str>::new());
        let found = warnings(&g);
        for code in ["unreachable_node", "empty_loop", "unknown_parameter"] {
            assert!(found.contains(&code), "{code} in {found:?}");
        }
    }

    #[test]
    fn disabled_nodes_are_bypassed() {
        // An end behind a disabled node is still reachable: disabled nodes pass through.
        let g = graph(
            json!([start(), {"slug": "guard", "kind": "guardrails", "is_enabled": false}, end()]),
            json!([{"source": "start", "target": "guard"}, {"source": "guard", "target": "end"}]),
        );
        assert_eq!(errors(&g), Vec::<&str>::new());
        assert_eq!(warnings(&g), ["unsupported_kind"]);
    }

    #[test]
    fn disabled_nodes_carry_branches_and_joins() {
        let g = graph(
            json!([start(), {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "join", "branches": ["left", "right"]}},
                   {"slug": "a", "kind": "watch", "is_enabled": false}, {"slug": "b", "kind": "assistant_message", "parameters": {"message": "b"}},
                   {"slug": "join", "kind": "parallel_join"}, end()]),
            json!([{"source": "start", "target": "split"}, {"source": "split", "target": "a"}, {"source": "split", "target": "b"},
                   {"source": "a", "target": "join"}, {"source": "b", "target": "join"}, {"source": "join", "target": "end"}]),
        );
        assert_eq!(errors(&g), Vec::<&str>::new());
        // A disabled node's own configuration problems are only warnings.
        let g = graph(
            json!([start(), {"slug": "c", "kind": "condition", "is_enabled": false, "parameters": {"path": "state.x >"}}, end()]),
            json!([{"source": "start", "target": "c"}, {"source": "c", "target": "end"}]),
        );
        assert_eq!(errors(&g), Vec::<&str>::new());
        assert_eq!(warnings(&g), ["invalid_expression"]);
    }

    #[test]
    fn case_labels_match_without_case() {
        let g = graph(
            json!([start(), {"slug": "c", "kind": "condition", "parameters": {"cases": [{"label": "Refund", "predicate": "true"}]}}, end(), {"slug": "e2", "kind": "end"}]),
            json!([{"source": "start", "target": "c"}, {"source": "c", "target": "end", "condition": "refund"}, {"source": "c", "target": "e2", "condition": "Else"}]),
        );
        assert_eq!(codes(&g), []);
    }

    #[test]
    fn huge_graphs_are_refused_quickly() {
        let nodes: Vec<Value> = (0..=MAX_NODES).map(|i| json!({"slug": format!("n{i}"), "kind": "watch", "parent_slug": format!("n{}", i + 1)})).collect();
        let g = graph(json!(nodes), json!([]));
        assert_eq!(errors(&g), ["graph_too_large"]);
        // Deeply nested loops at the limit still validate in reasonable time.
        let mut nodes = vec![start(), end()];
        for i in 0..400 {
            let parent = if i == 0 {
                Value::Null
            } else {
                json!(format!("l{}", i - 1))
            };
            nodes.push(json!({"slug": format!("l{i}"), "kind": "while", "parent_slug": parent, "parameters": {"condition": "true"}}));
        }
        let edges: Vec<Value> = (0..2000).map(|i| json!({"source": format!("l{}", i % 400), "target": format!("l{}", (i * 7) % 400)})).collect();
        let g = graph(json!(nodes), json!(edges));
        let started = std::time::Instant::now();
        let _ = validate(&g);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn loops_and_branches_validate() {
        let g = graph(
            json!([start(),
                   {"slug": "ask", "kind": "user_approval", "parameters": {"message": "OK?"}},
                   {"slug": "loop", "kind": "while", "parameters": {"condition": "state.n < 3", "max_iterations": 5}},
                   {"slug": "inc", "kind": "state", "parent_slug": "loop", "parameters": {"state": [{"target": "state.n", "expression": "state.n + 1"}]}},
                   {"slug": "route", "kind": "condition", "parameters": {"path": "state.n", "mode": "equals", "value": 3}},
                   end(), {"slug": "no", "kind": "end"}]),
            json!([{"source": "start", "target": "ask"},
                   {"source": "ask", "target": "loop", "condition": "approve"}, {"source": "ask", "target": "no", "condition": "reject"},
                   {"source": "loop", "target": "inc", "condition": "loop"}, {"source": "inc", "target": "loop"},
                   {"source": "loop", "target": "route", "condition": "exit"},
                   {"source": "route", "target": "end", "condition": "true"}, {"source": "route", "target": "no"}]),
        );
        assert_eq!(codes(&g), []);
    }
}
