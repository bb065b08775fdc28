//! The tools an agent may call: resolved from its node's entries (client, workflow,
//! knowledge, MCP and defined tools), run on the server, and when a call needs a person's
//! approval.

use super::*;

/// A tool an agent may call, resolved from its node's `tools` entries.
pub(super) enum AgentTool {
    /// Run by the chat client; the run waits for its result.
    Client(ToolSpec),
    /// Runs another published workflow with the model's message as its input.
    Workflow(ToolSpec, WorkflowRef),
    /// Searches knowledge bases; what it finds is cited by the answer.
    Knowledge(ToolSpec, KnowledgeTool),
    /// Checks a workflow graph and returns its problems.
    ValidateWorkflowGraph(ToolSpec),
    /// A tool of an MCP server.
    Mcp(ToolSpec, McpBinding),
    /// A defined `http` tool, called by the server.
    Http(ToolSpec, Box<crate::tools::ToolDef>, ApprovalRule),
}

/// Which server and tool an MCP tool calls, and whether a person approves each call.
#[derive(Debug, Clone)]
pub(super) struct McpBinding {
    pub(super) server_id: i64,
    pub(super) server_label: String,
    /// The tool's name on the server (the model may see another).
    pub(super) tool: String,
    pub(super) approval: ApprovalRule,
}

/// When a person approves a tool's calls.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ApprovalRule {
    Never,
    Always,
    /// A CEL expression over the call's arguments (`input`), the run's `state` and `user`;
    /// the call waits for approval when it is true, or cannot be evaluated.
    When(String),
}

impl ApprovalRule {
    /// From an entry's `require_approval` (see [`needs_approval`]), or `{"when": "…"}`.
    pub(super) fn from_policy(policy: Option<&Value>, tool: &str) -> ApprovalRule {
        if let Some(rule) = policy.and_then(|p| p.get("when")).and_then(Value::as_str) {
            return ApprovalRule::When(rule.to_string());
        }
        if needs_approval(policy, tool) {
            ApprovalRule::Always
        } else {
            ApprovalRule::Never
        }
    }

    pub(super) fn applies(&self, scope: &Scope, arguments: Value) -> bool {
        match self {
            ApprovalRule::Never => false,
            ApprovalRule::Always => true,
            ApprovalRule::When(rule) => {
                let mut scope = scope.clone();
                scope.input = arguments;
                !matches!(scope.eval(rule), Ok(Value::Bool(false)))
            }
        }
    }
}

impl AgentTool {
    pub(super) fn spec(&self) -> &ToolSpec {
        match self {
            AgentTool::Client(spec)
            | AgentTool::Workflow(spec, _)
            | AgentTool::ValidateWorkflowGraph(spec)
            | AgentTool::Knowledge(spec, _)
            | AgentTool::Mcp(spec, _)
            | AgentTool::Http(spec, ..) => spec,
        }
    }
}

/// A knowledge tool's settings (the seed's `file_search` tool entry).
#[derive(Debug, Clone)]
pub(super) struct KnowledgeTool {
    pub(super) stores: Vec<String>,
    pub(super) top_k: usize,
    pub(super) documents: bool,
    pub(super) chunks_per_document: Option<usize>,
}

impl KnowledgeTool {
    /// Reads `{type: "file_search", file_search: {vector_store_slug | vector_store_ids |
    /// store: {slug}, max_num_results, return_documents, chunks_per_document}}`, or the
    /// same keys at the top level (Agent Builder's form).
    fn parse(entry: &Value) -> Option<KnowledgeTool> {
        let config = entry.get("file_search").unwrap_or(entry);
        let mut stores: Vec<String> = Vec::new();
        let mut add = |slug: &str| {
            let slug = slug.trim().to_ascii_lowercase();
            if !slug.is_empty() && !stores.contains(&slug) {
                stores.push(slug);
            }
        };
        for key in ["vector_store_slug", "vector_store_id"] {
            if let Some(slug) = config.get(key).and_then(Value::as_str) {
                add(slug);
            }
        }
        for key in ["vector_store_slugs", "vector_store_ids"] {
            for slug in config
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(slug) = slug.as_str() {
                    add(slug);
                }
            }
        }
        if let Some(slug) = config.pointer("/store/slug").and_then(Value::as_str) {
            add(slug);
        }
        if stores.is_empty() {
            return None;
        }
        Some(KnowledgeTool {
            stores,
            top_k: config
                .get("max_num_results")
                .or_else(|| config.get("top_k"))
                .and_then(Value::as_u64)
                .map_or(5, |n| n.clamp(1, 50) as usize),
            documents: config.get("return_documents").and_then(Value::as_bool) == Some(true),
            chunks_per_document: config
                .get("chunks_per_document")
                .and_then(Value::as_u64)
                .map(|n| n.clamp(1, 50) as usize),
        })
    }
}

/// Runs the knowledge tool: the passages go back to the model, numbered by source, and
/// the documents they come from join the answer's citations. A failed search is told to
/// the model, which can answer without it.
pub(super) async fn search_knowledge(
    ctx: &RunCtx<'_>,
    tool: &KnowledgeTool,
    call: &ToolCall,
    sources: &mut Vec<Value>,
) -> Result<Value, NodeError> {
    let arguments = arguments_of(call);
    let query = arguments
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if query.trim().is_empty() {
        return Ok(json!({"error": "give a `query` to search for"}));
    }
    let mut req = crate::knowledge::search::SearchRequest::new(query, tool.top_k);
    req.chunks_per_document = tool.chunks_per_document;
    let found = match crate::runs::knowledge::search_stores(ctx, &tool.stores, &req, tool.documents)
        .await
    {
        Ok(found) => found,
        Err(err) => return Ok(json!({"error": err.to_string()})),
    };
    // Sources are numbered across the whole answer: [1] stays the first document cited.
    let mut results = Vec::new();
    for result in &found.results {
        let local = result["source"].as_u64().unwrap_or(1) as usize;
        let source = &found.sources[local - 1];
        let number = match sources.iter().position(|s| s == source) {
            Some(index) => index + 1,
            None => {
                sources.push(source.clone());
                sources.len()
            }
        };
        results.push(json!({
            "source": number,
            "title": result["title"].as_str().or_else(|| result["filename"].as_str()).or_else(|| result["doc_id"].as_str()),
            "text": result["text"],
        }));
    }
    if results.is_empty() {
        return Ok(
            json!({"results": [], "note": "nothing matched; answer from what you know or say you did not find it"}),
        );
    }
    Ok(json!({"results": results, "note": "cite sources as [n]"}))
}

/// Calls an MCP tool. Every failure (the server gone, refused, slow, the tool's own error)
/// goes back to the model as the tool's output, so it can answer without it.
pub(super) async fn call_mcp(ctx: &RunCtx<'_>, binding: &McpBinding, call: &ToolCall) -> Value {
    let server = match crate::mcp::server(ctx.services, binding.server_id).await {
        Ok(server) if server.is_active => server,
        Ok(_) => {
            return json!({"error": format!("the MCP server {} is turned off", binding.server_label)});
        }
        Err(err) => return json!({"error": err.to_string()}),
    };
    let connection = match crate::mcp::oauth::connect_info(ctx.services, server).await {
        Ok(connection) => connection,
        Err(err) => return json!({"error": err.to_string()}),
    };
    let arguments = match arguments_of(call) {
        Value::Object(map) => Value::Object(map),
        Value::Null => json!({}),
        _ => return json!({"error": "the arguments must be a JSON object"}),
    };
    match ctx
        .services
        .mcp
        .call_tool(&connection, &binding.tool, arguments)
        .await
    {
        Ok(result) if result.is_error => json!({"error": result.text}),
        Ok(result) if result.text.is_empty() => result.structured.unwrap_or(json!("")),
        Ok(result) => Value::String(result.text),
        Err(err) => json!({"error": err.to_string()}),
    }
}

/// Whether a call of `tool` needs approval under an entry's `require_approval` (when it is
/// not a `{"when": …}` rule): `never` (the default), `always`, or OpenAI's `{"always": {"tool_names": [...]}, "never":
/// {"tool_names": [...]}}` (tools named in neither list need it only when `never` is the
/// list given).
pub(super) fn needs_approval(policy: Option<&Value>, tool: &str) -> bool {
    let listed = |key: &str| -> Option<bool> {
        let names = policy?.get(key)?;
        let names = names.get("tool_names").unwrap_or(names);
        Some(
            names
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n.as_str() == Some(tool))),
        )
    };
    match policy {
        None | Some(Value::Null) => false,
        Some(Value::String(mode)) => mode == "always",
        Some(Value::Bool(always)) => *always,
        Some(_) => match (listed("always"), listed("never")) {
            (Some(true), _) => true,
            (_, Some(true)) => false,
            (Some(false), None) => false,
            (None, Some(false)) => true,
            _ => false,
        },
    }
}

/// Adds the defined tools the node names: `{type: "tool", tool_id | name}`, or a function
/// entry whose name is a defined tool (`{type: "function", function: {name}}`).
pub(super) async fn resolve_defined_tools(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    entries: &[Value],
    tools: &mut Vec<AgentTool>,
) {
    use crate::tools::{self as defined, ToolKind};
    for entry in entries {
        let kind = entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let function = entry.get("function").unwrap_or(entry);
        let name = function.get("name").and_then(Value::as_str);
        let found = match (kind, entry.get("tool_id").and_then(Value::as_i64), name) {
            ("tool", Some(id), _) => defined::get_tool(ctx.services, id).await,
            ("tool", None, Some(name)) => defined::tool_by_name(ctx.services, name).await,
            ("function", _, Some(name)) if name != "validate_workflow_graph" => {
                defined::tool_by_name(ctx.services, name).await
            }
            ("tool", None, None) => Err(defined::ToolError::Invalid(
                "a tool entry needs `tool_id` or `name`".into(),
            )),
            _ => continue,
        };
        let tool = match found {
            Ok(tool) if tool.is_active => tool,
            Ok(tool) => {
                log.event(EventKind::Warning, Some(&node.slug), json!({"message": format!("the tool `{}` is turned off; the agent runs without it", tool.name)}));
                continue;
            }
            Err(err) => {
                log.event(
                    EventKind::Warning,
                    Some(&node.slug),
                    json!({"message": format!("{err}; the agent runs without it")}),
                );
                continue;
            }
        };
        let spec = |parameters: Value| ToolSpec {
            name: tool_name(&tool.name),
            description: tool.description.clone(),
            parameters,
            strict: false,
        };
        let resolved = match tool.kind {
            ToolKind::Http => {
                // A workflow may ask for more approval than the tool's, never for less.
                let rule = match entry.get("require_approval") {
                    _ if tool.approval == "always" => ApprovalRule::Always,
                    Some(policy) => ApprovalRule::from_policy(Some(policy), &tool.name),
                    None => ApprovalRule::Never,
                };
                Some(AgentTool::Http(spec(tool.parameters.clone()), Box::new(tool.clone()), rule))
            }
            ToolKind::Client => Some(AgentTool::Client(spec(tool.parameters.clone()))),
            ToolKind::Workflow => {
                let reference = match tool.config.get("workflow_id").and_then(Value::as_i64) {
                    Some(id) => WorkflowRef::Id(id),
                    None => WorkflowRef::Slug(tool.config["workflow_slug"].as_str().unwrap_or_default().to_string()),
                };
                Some(AgentTool::Workflow(
                    spec(json!({"type": "object", "properties": {"initial_message": {"type": "string", "description": "The message the workflow starts with"}}, "required": ["initial_message"]})),
                    reference,
                ))
            }
            ToolKind::Knowledge => KnowledgeTool::parse(&tool.config).map(|knowledge| {
                AgentTool::Knowledge(
                    spec(json!({"type": "object", "properties": {"query": {"type": "string", "description": "What to look for, in a few words"}}, "required": ["query"]})),
                    knowledge,
                )
            }),
        };
        match resolved {
            Some(resolved) if !tools.iter().any(|t| t.spec().name == resolved.spec().name) => {
                tools.push(resolved)
            }
            Some(_) => log.event(EventKind::Warning, Some(&node.slug), json!({"message": format!("two tools are named `{}`; the second is left out", tool.name)})),
            None => log.event(EventKind::Warning, Some(&node.slug), json!({"message": format!("the tool `{}` is misconfigured; the agent runs without it", tool.name)})),
        }
    }
}

/// Adds the tools of the MCP servers the node's `{type: "mcp", server_id, allow: {tools}}`
/// entries name: the tools the server listed (cached, or listed now when it never was),
/// only those of the allow-list when there is one. Servers that are gone, turned off or
/// unreachable are reported and left out.
pub(super) async fn resolve_mcp_tools(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    entries: &[Value],
    tools: &mut Vec<AgentTool>,
) {
    for entry in entries {
        if entry.get("type").and_then(Value::as_str) != Some("mcp") {
            continue;
        }
        let id = entry
            .get("server_id")
            .or_else(|| entry.pointer("/server/id"))
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
        let mut warn = |message: String| {
            log.event(
                EventKind::Warning,
                Some(&node.slug),
                json!({"message": message}),
            );
        };
        let Some(id) = id else {
            warn("an MCP tool entry names no `server_id`; the agent runs without it".into());
            continue;
        };
        let server = match crate::mcp::server(ctx.services, id).await {
            Ok(server) if server.is_active => server,
            Ok(server) => {
                warn(format!(
                    "the MCP server {} is turned off; the agent runs without its tools",
                    server.label
                ));
                continue;
            }
            Err(err) => {
                warn(format!("{err}; the agent runs without its tools"));
                continue;
            }
        };
        let offered = match server.tools_cache.clone() {
            Some(cached) => cached,
            None => match crate::mcp::probe_saved(ctx.services, id).await {
                Ok(report) if report.status == "ok" => report.tools,
                Ok(report) => {
                    warn(format!(
                        "the MCP server {} did not list its tools ({}); the agent runs without them",
                        server.label, report.message
                    ));
                    continue;
                }
                Err(err) => {
                    warn(format!("{err}; the agent runs without its tools"));
                    continue;
                }
            },
        };
        // A list, or OpenAI's `{"tool_names": [...]}`; an allow-list in any other shape
        // allows nothing rather than everything.
        let allow: Option<Vec<String>> = ["/allow/tools", "/allowed_tools", "/tool_names"]
            .iter()
            .find_map(|p| entry.pointer(p))
            .map(|names| {
                names
                    .get("tool_names")
                    .unwrap_or(names)
                    .as_array()
                    .map(|names| {
                        names
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            });
        if let Some(allow) = &allow {
            for name in allow {
                if !offered.iter().any(|t| &t.name == name) {
                    warn(format!(
                        "the MCP server {} offers no tool `{name}`",
                        server.label
                    ));
                }
            }
        }
        let policy = entry.get("require_approval");
        for tool in offered {
            if allow.as_ref().is_some_and(|a| !a.contains(&tool.name)) {
                continue;
            }
            let mut name = tool_name(&tool.name);
            if tools.iter().any(|t| t.spec().name == name) {
                name = tool_name(&format!("{}_{}", server.label, tool.name));
            }
            let mut parameters = tool.input_schema.clone();
            if parameters.get("properties").is_none()
                && let Some(object) = parameters.as_object_mut()
            {
                object.insert("properties".into(), json!({}));
            }
            tools.push(AgentTool::Mcp(
                ToolSpec {
                    name,
                    description: tool.description.clone().or(tool.title.clone()),
                    parameters,
                    strict: false,
                },
                McpBinding {
                    server_id: server.id,
                    server_label: server.label.clone(),
                    approval: ApprovalRule::from_policy(policy, &tool.name),
                    tool: tool.name,
                },
            ));
        }
    }
}

/// The arguments of a call as JSON (as text when the model wrote invalid JSON).
pub(super) fn arguments_of(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!(call.arguments))
}

/// Runs a tool on the server. Its failures go back to the model as the tool's output, so
/// it can recover; only a cancellation stops the step.
pub(super) async fn run_tool(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    tool: &AgentTool,
    call: &ToolCall,
) -> Result<Value, NodeError> {
    let arguments = arguments_of(call);
    match tool {
        AgentTool::Client(_) => unreachable!("client tools are answered by the client"),
        AgentTool::Knowledge(..) => unreachable!("the knowledge tool is run with its sources"),
        AgentTool::Mcp(..) | AgentTool::Http(..) => {
            unreachable!("MCP and http tools are run with their approvals")
        }
        AgentTool::ValidateWorkflowGraph(_) => {
            let graph = match arguments.get("graph") {
                Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
                Some(value) => value.clone(),
                None => arguments.clone(),
            };
            Ok(match Graph::from_json(graph) {
                Ok(graph) => {
                    let problems = validate::validate(&graph);
                    let valid = !problems
                        .iter()
                        .any(|p| p.severity == crate::workflows::Severity::Error);
                    json!({"valid": valid, "problems": problems})
                }
                Err(message) => {
                    json!({"valid": false, "problems": [{"code": "invalid_graph", "message": message}]})
                }
            })
        }
        AgentTool::Workflow(_, reference) => {
            let message = arguments
                .get("initial_message")
                .or_else(|| arguments.get("input"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match compose::run_nested(
                ctx,
                log,
                reference,
                json!({"input_as_text": message}),
                &call.name,
            )
            .await
            {
                Ok(output) => Ok(output),
                Err(NodeError::Cancelled) => Err(NodeError::Cancelled),
                Err(err) => Ok(json!({"error": err.to_string()})),
            }
        }
    }
}

/// Resolves the node's tool entries; entries this version cannot run are reported and
/// left out, so the agent still answers.
pub(super) fn resolve_tools(log: &mut Log<'_>, node: &Node, entries: &[Value]) -> Vec<AgentTool> {
    let mut tools = Vec::new();
    for entry in entries {
        let kind = entry
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| entry.as_str())
            .unwrap_or_default();
        let function = entry.get("function").unwrap_or(entry);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let description = function
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let parameters = function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let tool = match (kind, name) {
            ("client_tool" | "client", Some(name)) => Some(AgentTool::Client(ToolSpec {
                name,
                description,
                parameters,
                strict: false,
            })),
            // A defined tool, by name or id: resolved by `resolve_defined_tools`.
            ("tool", _) => continue,
            ("function", Some(name)) if name != "validate_workflow_graph" => continue,
            ("function", Some(name)) => {
                Some(AgentTool::ValidateWorkflowGraph(ToolSpec {
                    name,
                    description: description.or_else(|| Some("Checks a workflow graph (nodes and edges) and lists its problems.".into())),
                    parameters: json!({"type": "object", "properties": {"graph": {"type": "object", "description": "The graph: {nodes, edges}"}}, "required": ["graph"]}),
                    strict: false,
                }))
            }
            ("file_search" | "knowledge", _) => KnowledgeTool::parse(entry).map(|knowledge| {
                AgentTool::Knowledge(
                    ToolSpec {
                        name: entry
                            .get("name")
                            .and_then(Value::as_str)
                            .map(tool_name)
                            .unwrap_or_else(|| "file_search".into()),
                        description: description.or_else(|| {
                            Some(format!(
                                "Searches the knowledge base{} {} for passages relevant to a query; cite what you use as [n].",
                                if knowledge.stores.len() > 1 { "s" } else { "" },
                                knowledge.stores.join(", ")
                            ))
                        }),
                        parameters: json!({"type": "object", "properties": {"query": {"type": "string", "description": "What to look for, in a few words"}}, "required": ["query"]}),
                        strict: false,
                    },
                    knowledge,
                )
            }),
            ("workflow", _) => WorkflowRef::parse(entry.get("workflow").unwrap_or(entry)).map(|reference| {
                let label = reference.label();
                let name = entry
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| tool_name(&format!("run_{label}")));
                AgentTool::Workflow(
                    ToolSpec {
                        name,
                        description: description.or_else(|| {
                            Some(format!("Runs the workflow `{label}` and returns its result."))
                        }),
                        parameters: json!({"type": "object", "properties": {"initial_message": {"type": "string", "description": "The message the workflow starts with"}}, "required": ["initial_message"]}),
                        strict: false,
                    },
                    reference,
                )
            }),
            // Resolved by `resolve_mcp_tools`, which reads the servers.
            ("mcp", _) => continue,
            _ => None,
        };
        match tool {
            Some(tool) => tools.push(tool),
            None => log.event(
                EventKind::Warning,
                Some(&node.slug),
                json!({"message": format!("the tool `{}` cannot run in this version; the agent runs without it", if kind.is_empty() { "?" } else { kind })}),
            ),
        }
    }
    tools
}

/// A name a model API accepts: `[a-zA-Z0-9_-]`, at most 64 characters.
pub(super) fn tool_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_policies() {
        assert!(!needs_approval(None, "x"));
        assert!(needs_approval(Some(&json!("always")), "x"));
        assert!(!needs_approval(Some(&json!("never")), "x"));
        let some = json!({"always": {"tool_names": ["delete"]}});
        assert!(needs_approval(Some(&some), "delete"));
        assert!(!needs_approval(Some(&some), "read"));
        let others = json!({"never": {"tool_names": ["read"]}});
        assert!(!needs_approval(Some(&others), "read"));
        assert!(needs_approval(Some(&others), "delete"));

        let rule = ApprovalRule::from_policy(Some(&json!({"when": "input.amount > 100"})), "pay");
        let scope = Scope::default();
        assert!(rule.applies(&scope, json!({"amount": 250})));
        assert!(!rule.applies(&scope, json!({"amount": 20})));
        // A rule that cannot be evaluated asks.
        assert!(rule.applies(&scope, json!({})));
    }
}
