//! The agent step: a model call with instructions, history, tools and structured output,
//! streamed live, in a bounded tool-call loop that may pause for a client tool.
//!
//! A client tool pauses the run: the conversation of the step so far (messages, calls
//! still to answer, rounds used) is kept in `scratch.agent`, and the step runs again when
//! the client's result arrives, in any process.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    EventKind, HistoryEntry, Run, RunError, RunResult, RunStatus, Wait, WaitKind,
    compose::{self, WorkflowRef},
    step::{CANCELLED, Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
    values::{set_path, strip_nul},
};
use crate::{
    error::DomainError,
    llm::{
        ChatRequest, Completion, ContentPart, JsonSchemaFormat, LlmError, Message, Role,
        StreamEvent, ToolCall, ToolSpec,
    },
    models::{
        self, Model, ProviderCredentials,
        usage::{self, Purpose},
    },
    workflows::{Graph, Node, eval::Scope, nodes, validate},
};

/// A tool an agent may call, resolved from its node's `tools` entries.
enum AgentTool {
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
struct McpBinding {
    server_id: i64,
    server_label: String,
    /// The tool's name on the server (the model may see another).
    tool: String,
    approval: ApprovalRule,
}

/// When a person approves a tool's calls.
#[derive(Debug, Clone, PartialEq)]
enum ApprovalRule {
    Never,
    Always,
    /// A CEL expression over the call's arguments (`input`), the run's `state` and `user`;
    /// the call waits for approval when it is true, or cannot be evaluated.
    When(String),
}

impl ApprovalRule {
    /// From an entry's `require_approval` (see [`needs_approval`]), or `{"when": "…"}`.
    fn from_policy(policy: Option<&Value>, tool: &str) -> ApprovalRule {
        if let Some(rule) = policy.and_then(|p| p.get("when")).and_then(Value::as_str) {
            return ApprovalRule::When(rule.to_string());
        }
        if needs_approval(policy, tool) {
            ApprovalRule::Always
        } else {
            ApprovalRule::Never
        }
    }

    fn applies(&self, scope: &Scope, arguments: Value) -> bool {
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
    fn spec(&self) -> &ToolSpec {
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

/// An agent step in progress, kept in `scratch.agent` while a client tool runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Turn {
    node: String,
    messages: Vec<Message>,
    /// Calls of the last answer not answered yet, in order.
    pending: Vec<ToolCall>,
    rounds: u32,
    repaired: bool,
    /// Responses API: the last answer's id, so the next round sends only what is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_id: Option<String>,
    /// The client's result for the first pending call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_output: Option<Value>,
    /// Documents the knowledge tool found, cited by the answer (ChatKit `file` sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<Value>,
    /// A person's decision on the call `approval_call` (the first pending one when it was
    /// asked), used only for that call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval_call: Option<String>,
    /// The calls answered so far, for the step's record: `{call_id, name, arguments, output}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    calls: Vec<Value>,
}

/// Hands a client tool's result to the agent step waiting for it.
pub(crate) fn accept_client_output(run: &mut Run, node: &str, output: Value) -> RunResult<()> {
    let turn = run
        .scratch
        .get_mut("agent")
        .filter(|t| t.get("node").and_then(Value::as_str) == Some(node))
        .ok_or_else(|| RunError::Invalid("no agent step waits for a client tool".into()))?;
    turn["client_output"] = output;
    Ok(())
}

/// Forgets the conversation an agent step `node` keeps between its passes (a failed
/// attempt's).
pub(crate) fn forget_turn(run: &mut Run, node: &str) {
    if run
        .scratch
        .get("agent")
        .and_then(|a| a.get("node"))
        .and_then(Value::as_str)
        == Some(node)
        && let Some(scratch) = run.scratch.as_object_mut()
    {
        scratch.remove("agent");
    }
}

/// The person's decision for `call`, when there is one for that very call; a decision for
/// another call is dropped.
fn take_decision(turn: &mut Turn, call: &ToolCall) -> Option<bool> {
    let decision = turn.approval.take();
    let for_call = turn.approval_call.take();
    decision.filter(|_| for_call.as_deref() == Some(call.id.as_str()))
}

/// Hands a person's decision to the agent step waiting for it, when an agent waits; `false`
/// when the approval belongs to an approval step instead.
pub(crate) fn accept_approval(run: &mut Run, node: &str, approved: bool) -> bool {
    match run
        .scratch
        .get_mut("agent")
        .filter(|t| t.get("node").and_then(Value::as_str) == Some(node))
    {
        Some(turn) => {
            let call = turn["pending"][0]["id"].clone();
            turn["approval"] = json!(approved);
            turn["approval_call"] = call;
            true
        }
        None => false,
    }
}

pub(crate) async fn run(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
) -> Result<Outcome, NodeError> {
    let config: nodes::Agent = parse(node)?;
    if let Some(reference) = &config.workflow {
        let reference = WorkflowRef::parse(reference).ok_or_else(|| {
            node_error(
                "invalid_parameters",
                "the nested workflow reference is invalid",
            )
        })?;
        return compose::nested_node(ctx, log, node, &reference).await;
    }
    let mut config = config;
    apply_model_choice(log, node, &mut config);
    let model = resolve_model(ctx, &config).await?;
    let provider = models::credentials(ctx.services, model.provider_id)
        .await
        .map_err(|err| node_error("provider_unavailable", err.to_string()))?;
    let settings = config.model_settings.clone().unwrap_or_default();
    let entries = config.tools.as_deref().unwrap_or_default();
    let mut tools = resolve_tools(log, node, entries);
    resolve_mcp_tools(ctx, log, node, entries, &mut tools).await;
    resolve_defined_tools(ctx, log, node, entries, &mut tools).await;
    let mut turn = match log
        .run
        .scratch
        .as_object_mut()
        .and_then(|s| s.remove("agent"))
    {
        Some(saved) => serde_json::from_value::<Turn>(saved)
            .ok()
            .filter(|t| t.node == node.slug)
            .ok_or_else(|| {
                node_error(
                    "engine_error",
                    "the agent's saved conversation is unreadable",
                )
            })?,
        None => Turn {
            node: node.slug.clone(),
            messages: first_messages(ctx, log, node, &model, &config, scope, &settings).await?,
            ..Turn::default()
        },
    };
    // An answer shown as a widget: the widget's bindings are the answer's schema (unless
    // one is given), and the widget fills in as the answer streams.
    let mut widget = match &config.widget {
        Some(setting) => {
            let (_, definition) = super::widget::definition(ctx, setting, scope).await?;
            Some(super::widget::WidgetStream::new(definition))
        }
        None => None,
    };
    let response_format = response_format(&config).or_else(|| {
        let schema = super::widget::output_schema(&widget.as_ref()?.definition)?;
        Some(JsonSchemaFormat {
            name: "widget".into(),
            schema,
            strict: true,
        })
    });
    let show = settings
        .get("response_in_chat")
        .and_then(Value::as_bool)
        .unwrap_or(true)
        && response_format.is_none();
    let mut request = ChatRequest {
        model: model.name.clone(),
        instructions: config
            .instructions
            .as_deref()
            .map(|i| scope.render_text(i))
            .transpose()?,
        tools: tools.iter().map(|t| t.spec().clone()).collect(),
        parallel_tool_calls: settings.get("parallel_tool_calls").and_then(Value::as_bool),
        response_format,
        native_structured_output: model.capabilities.structured_output,
        temperature: settings.get("temperature").and_then(Value::as_f64),
        top_p: settings.get("top_p").and_then(Value::as_f64),
        max_output_tokens: settings.get("max_output_tokens").and_then(Value::as_u64),
        reasoning_effort: settings
            .get("reasoning")
            .and_then(|r| r.get("effort"))
            .and_then(Value::as_str)
            .map(str::to_string),
        verbosity: settings
            .get("text")
            .and_then(|t| t.get("verbosity"))
            .and_then(Value::as_str)
            .map(str::to_string),
        ..ChatRequest::default()
    };
    let max_rounds = settings
        .get("max_tool_rounds")
        .and_then(Value::as_u64)
        .map_or(ctx.services.engine.max_tool_rounds, |n| {
            n.clamp(1, 100) as u32
        });
    let completion = loop {
        // Answer the calls of the last round, in order; a client tool pauses the run.
        while let Some(call) = turn.pending.first().cloned() {
            let output = match tools.iter().find(|t| t.spec().name == call.name) {
                Some(AgentTool::Client(_)) => match turn.client_output.take() {
                    Some(output) => output,
                    None => return Ok(pause_for_client(log, node, turn, &call)),
                },
                Some(AgentTool::Knowledge(_, knowledge)) => {
                    search_knowledge(ctx, knowledge, &call, &mut turn.sources).await?
                }
                Some(AgentTool::Http(_, tool, rule)) => {
                    let approved = if rule.applies(scope, arguments_of(&call)) {
                        match take_decision(&mut turn, &call) {
                            Some(decision) => decision,
                            None => {
                                let data = json!({"tool": tool.name, "tool_id": tool.id});
                                return Ok(pause_for_approval(
                                    log,
                                    node,
                                    turn,
                                    &call,
                                    "the server",
                                    data,
                                ));
                            }
                        }
                    } else {
                        true
                    };
                    if approved {
                        crate::tools::run_http(ctx.services, tool, arguments_of(&call)).await
                    } else {
                        json!({"error": "the user refused this call; do not try it again, answer without it"})
                    }
                }
                Some(AgentTool::Mcp(_, binding)) => {
                    let approved = if binding.approval.applies(scope, arguments_of(&call)) {
                        match take_decision(&mut turn, &call) {
                            Some(decision) => decision,
                            None => {
                                let data = json!({"tool": binding.tool, "server": binding.server_label, "server_id": binding.server_id});
                                return Ok(pause_for_approval(
                                    log,
                                    node,
                                    turn,
                                    &call,
                                    &binding.server_label,
                                    data,
                                ));
                            }
                        }
                    } else {
                        true
                    };
                    if approved {
                        call_mcp(ctx, binding, &call).await
                    } else {
                        json!({"error": "the user refused this call; do not try it again, answer without it"})
                    }
                }
                Some(tool) => run_tool(ctx, log, tool, &call).await?,
                None => json!({"error": format!("there is no tool named `{}`", call.name)}),
            };
            log.event(
                EventKind::ToolCallFinished,
                Some(&node.slug),
                json!({"call_id": call.id, "name": call.name, "output": output}),
            );
            turn.calls.push(json!({"call_id": call.id, "name": call.name, "arguments": arguments_of(&call), "output": output}));
            let text = match &output {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            turn.messages
                .push(Message::tool_result(call.id.clone(), text));
            turn.pending.remove(0);
        }
        if turn.rounds >= max_rounds {
            return Err(node_error(
                "tool_loop_limit",
                format!(
                    "the agent called tools in {max_rounds} rounds without answering (`max_tool_rounds`)"
                ),
            ));
        }
        turn.rounds += 1;
        request.messages = turn.messages.clone();
        request.previous_response_id = turn.response_id.clone();
        // The previous call's usage goes on record before this call starts.
        if !log.usage.is_empty() {
            log.flush_usage(ctx.services).await;
        }
        let display = match widget.as_mut() {
            Some(stream) => {
                stream.restart();
                Display::Widget(stream)
            }
            None if show => Display::Text,
            None => Display::Hidden,
        };
        let completion = match call_model(ctx, log, node, &model, &provider, &request, display)
            .await
        {
            Err(LlmError::InvalidOutput(problem)) if !turn.repaired => {
                // One repair attempt, telling the model what was wrong.
                turn.repaired = true;
                log.event(
                    EventKind::AgentRepair,
                    Some(&node.slug),
                    json!({"problem": problem}),
                );
                turn.messages.push(Message::text(Role::User, format!("Your answer did not match the required JSON Schema ({problem}). Answer again with the JSON object only.")));
                continue;
            }
            Err(LlmError::Cancelled) => {
                return Err(node_error(CANCELLED, "the run was cancelled"));
            }
            Err(err) => return Err(node_error(err.code(), err.to_string())),
            Ok(mut completion) => {
                // PostgreSQL cannot store NUL characters; a model may write them.
                for text in [&mut completion.text, &mut completion.reasoning]
                    .into_iter()
                    .chain(completion.tool_calls.iter_mut().map(|c| &mut c.arguments))
                {
                    if text.contains('\0') {
                        *text = text.replace('\0', "");
                    }
                }
                if let Some(parsed) = completion.parsed.as_mut() {
                    strip_nul(parsed);
                }
                completion
            }
        };
        if completion.tool_calls.is_empty() {
            break completion;
        }
        turn.response_id = completion.response_id.clone();
        let mut said = Message::text(Role::Assistant, completion.text.clone());
        if completion.text.is_empty() {
            said.content.clear();
        }
        said.tool_calls = completion.tool_calls.clone();
        turn.messages.push(said);
        for call in &completion.tool_calls {
            log.event(
                EventKind::ToolCallStarted,
                Some(&node.slug),
                json!({"call_id": call.id, "name": call.name, "arguments": arguments_of(call)}),
            );
        }
        turn.pending = completion.tool_calls;
    };
    if show && !completion.text.is_empty() {
        log.say_cited(&node.slug, completion.text.clone(), &turn.sources);
    } else {
        log.run.history.push(HistoryEntry {
            role: "assistant".into(),
            text: completion.text.clone(),
            ..Default::default()
        });
    }
    let parsed = completion.parsed.clone().unwrap_or(Value::Null);
    let shown = widget.map(|stream| {
        let mut definition = stream.definition;
        if let Some(values) = parsed.as_object() {
            super::widget::bind(&mut definition, values);
        }
        log.event(
            EventKind::Widget,
            Some(&node.slug),
            json!({"widget": definition, "await_action": false}),
        );
        definition
    });
    let state = &mut log.run.state;
    set_path(state, "last_agent_key", json!(node.slug));
    set_path(state, "last_agent_output_text", json!(completion.text));
    set_path(state, "last_agent_output_structured", parsed.clone());
    set_path(
        state,
        "last_agent_output",
        if parsed.is_null() {
            json!(completion.text)
        } else {
            parsed.clone()
        },
    );
    let mut output = json!({"output_text": completion.text, "output_parsed": parsed});
    if !turn.sources.is_empty() {
        output["sources"] = Value::Array(turn.sources.clone());
    }
    if !turn.calls.is_empty() {
        output["tool_calls"] = Value::Array(turn.calls.clone());
    }
    if let Some(widget) = shown {
        output["widget"] = widget;
    }
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}

/// A knowledge tool's settings (the seed's `file_search` tool entry).
#[derive(Debug, Clone)]
struct KnowledgeTool {
    stores: Vec<String>,
    top_k: usize,
    documents: bool,
    chunks_per_document: Option<usize>,
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
async fn search_knowledge(
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
    let found = match super::knowledge::search_stores(ctx, &tool.stores, &req, tool.documents).await
    {
        Ok(found) => found,
        Err(err) => return Ok(json!({"error": err.message})),
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

/// Keeps the step's conversation and waits for a person to approve `call` (an approval
/// card in chat, or a `POST /api/runs/{id}/resume {approved}` for headless runs).
/// `data` says which tool (`tool`, and `server` for an MCP tool); `place` names where it
/// runs, for the question.
fn pause_for_approval(
    log: &mut Log<'_>,
    node: &Node,
    turn: Turn,
    call: &ToolCall,
    place: &str,
    mut data: Value,
) -> Outcome {
    let arguments = arguments_of(call);
    let shown = serde_json::to_string(&arguments).unwrap_or_default();
    let shown: String = shown.chars().take(500).collect();
    let tool = data["tool"].as_str().unwrap_or(&call.name).to_string();
    data["call_id"] = json!(call.id);
    data["name"] = json!(call.name);
    data["arguments"] = arguments;
    log.run.scratch["agent"] = serde_json::to_value(&turn).unwrap_or(Value::Null);
    Outcome {
        output: json!({"approval_request": data.clone()}),
        next: Next::Wait(Wait {
            kind: WaitKind::Approval,
            node: node.slug.clone(),
            prompt: Some(format!(
                "Allow the tool `{tool}` of {place} to run with {shown}?"
            )),
            data: Some(data),
        }),
    }
}

/// Calls an MCP tool. Every failure (the server gone, refused, slow, the tool's own error)
/// goes back to the model as the tool's output, so it can answer without it.
async fn call_mcp(ctx: &RunCtx<'_>, binding: &McpBinding, call: &ToolCall) -> Value {
    let server = match crate::mcp::get_server(ctx.services, binding.server_id).await {
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
fn needs_approval(policy: Option<&Value>, tool: &str) -> bool {
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
async fn resolve_defined_tools(
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
async fn resolve_mcp_tools(
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
        let server = match crate::mcp::get_server(ctx.services, id).await {
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
            None => match crate::mcp::probe_server(ctx.services, id).await {
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

/// Keeps the step's conversation and waits for the client to run `call`.
fn pause_for_client(log: &mut Log<'_>, node: &Node, turn: Turn, call: &ToolCall) -> Outcome {
    let data = json!({"call_id": call.id, "name": call.name, "arguments": arguments_of(call)});
    log.run.scratch["agent"] = serde_json::to_value(&turn).unwrap_or(Value::Null);
    Outcome {
        output: json!({"client_tool_call": data.clone()}),
        next: Next::Wait(Wait {
            kind: WaitKind::ClientToolOutput,
            node: node.slug.clone(),
            prompt: None,
            data: Some(data),
        }),
    }
}

/// The arguments of a call as JSON (as text when the model wrote invalid JSON).
fn arguments_of(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!(call.arguments))
}

/// Runs a tool on the server. Its failures go back to the model as the tool's output, so
/// it can recover; only a cancellation stops the step.
async fn run_tool(
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
                Err(err) if err.code == CANCELLED => Err(err),
                Err(err) => Ok(json!({"error": err.message})),
            }
        }
    }
}

/// Resolves the node's tool entries; entries this version cannot run are reported and
/// left out, so the agent still answers.
fn resolve_tools(log: &mut Log<'_>, node: &Node, entries: &[Value]) -> Vec<AgentTool> {
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
fn tool_name(text: &str) -> String {
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

/// The caller's model choice (`StartRun::model`), for an agent that lets users choose:
/// one of its `user_model_options` (matched by `id` or `model`, bringing the option's
/// provider and settings), or with `model_selection_mode: "user"` and no options, any
/// enabled model. Otherwise the choice is ignored, with a warning event.
fn apply_model_choice(log: &mut Log<'_>, node: &Node, config: &mut nodes::Agent) {
    let Some(choice) = log
        .run
        .scratch
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let options = config.user_model_options.clone().unwrap_or_default();
    let option = options.iter().find(|o| {
        ["id", "model", "name"]
            .iter()
            .any(|k| o.get(*k).and_then(Value::as_str) == Some(choice.as_str()))
    });
    match option {
        Some(option) => {
            config.model = option
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(Some(choice));
            if let Some(provider) = option.get("model_provider_id").or_else(|| option.get("provider_id")) {
                config.model_provider_id = provider.as_str().map(str::to_string).or_else(|| provider.as_i64().map(|p| p.to_string()));
            }
            if let Some(Value::Object(settings)) = option.get("model_settings") {
                config.model_settings.get_or_insert_with(Default::default).extend(settings.clone());
            }
        }
        None if options.is_empty() && config.model_selection_mode.as_deref() == Some("user") => {
            config.model = Some(choice);
            config.model_provider_id = None;
        }
        None => log.event(
            EventKind::Warning,
            Some(&node.slug),
            json!({"message": format!("the model `{choice}` is not one this agent offers; it uses its own")}),
        ),
    }
}

async fn resolve_model(ctx: &RunCtx<'_>, config: &nodes::Agent) -> Result<Model, NodeError> {
    let registry = ctx
        .services
        .store
        .models(None, true)
        .await
        .map_err(|err| node_error("internal_error", err.to_string()))?;
    let wanted = config
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let provider_id = config
        .model_provider_id
        .as_deref()
        .and_then(|p| p.parse::<i64>().ok());
    match wanted {
        Some(name) => registry
            .iter()
            .find(|m| m.name == name && provider_id.is_none_or(|p| p == m.provider_id)),
        None => registry.iter().find(|m| m.is_default),
    }
    .cloned()
    .ok_or_else(|| match wanted {
        Some(name) => node_error(
            "model_not_found",
            format!("the model `{name}` is not in the registry (or is disabled)"),
        ),
        None => node_error(
            "model_not_found",
            "the agent has no model and no default model is set",
        ),
    })
}

/// The conversation an agent starts from: the run's history (unless turned off), else its
/// input, then the node's extra prompt messages.
async fn first_messages(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    config: &nodes::Agent,
    scope: &Scope,
    settings: &serde_json::Map<String, Value>,
) -> Result<Vec<Message>, NodeError> {
    let include_history = settings
        .get("include_chat_history")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut messages: Vec<Message> = Vec::new();
    if include_history {
        let history = log.run.history.clone();
        for entry in &history {
            let role = if entry.role == "user" {
                Role::User
            } else {
                Role::Assistant
            };
            let mut message = Message::text(role, entry.text.clone());
            for file in &entry.attachments {
                match attachment_part(ctx, model, file).await {
                    Ok(Some(part)) => message.content.push(part),
                    Ok(None) => log.event(
                        EventKind::Warning,
                        Some(&node.slug),
                        json!({"message": format!("the model `{}` cannot read `{}` ({}); it was left out", model.name, file.name, file.mime_type)}),
                    ),
                    Err(message) => log.event(EventKind::Warning, Some(&node.slug), json!({"message": message})),
                }
            }
            messages.push(message);
        }
    }
    if messages.is_empty() {
        let text = match &scope.input {
            Value::String(s) => s.clone(),
            other => other
                .get("user_message")
                .or_else(|| other.get("input_as_text"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string()),
        };
        messages.push(Message::text(Role::User, text));
    }
    for extra in config.messages.iter().flatten() {
        let role = if extra.get("role").and_then(Value::as_str) == Some("assistant") {
            Role::Assistant
        } else {
            Role::User
        };
        for part in extra
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                messages.push(Message::text(role, scope.render_text(text)?));
            }
        }
    }
    Ok(messages)
}

/// The largest text file given to a model inline.
const INLINE_TEXT_LIMIT: usize = 200_000;

/// How a model sees an attached file: images as images (vision models), text files as
/// text, PDFs and other documents as files; `None` when the model cannot take it.
async fn attachment_part(
    ctx: &RunCtx<'_>,
    model: &Model,
    file: &super::AttachmentRef,
) -> Result<Option<ContentPart>, String> {
    let services = ctx.services;
    let stored = services
        .store
        .chat_attachment(&file.id)
        .await
        .map_err(|err| err.to_string())?
        .filter(|a| a.uploaded)
        .ok_or_else(|| format!("the attachment `{}` is gone", file.name))?;
    let mime = stored
        .mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let textual = mime.starts_with("text/")
        || matches!(mime.as_str(), "application/json" | "application/xml");
    if textual {
        let bytes = services
            .blobs
            .get(&stored.id)
            .await
            .map_err(|err| err.to_string())?
            .unwrap_or_default();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if text.len() > INLINE_TEXT_LIMIT {
            let mut cut = INLINE_TEXT_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[…the file goes on]");
        }
        return Ok(Some(ContentPart::Text(format!(
            "\n\n[file: {}]\n{text}",
            stored.name
        ))));
    }
    if stored.is_image() && !model.capabilities.vision {
        return Ok(None);
    }
    let data_url = crate::chat::attachments::data_url(services, &stored)
        .await
        .map_err(|err| err.to_string())?;
    Ok(Some(if stored.is_image() {
        ContentPart::Image {
            url: data_url,
            detail: None,
        }
    } else {
        ContentPart::File {
            filename: stored.name.clone(),
            data_url,
        }
    }))
}

fn response_format(config: &nodes::Agent) -> Option<JsonSchemaFormat> {
    let format = config.response_format.as_ref()?;
    let inner = format
        .get("json_schema")
        .and_then(Value::as_object)
        .unwrap_or(format);
    (format.get("type").and_then(Value::as_str) == Some("json_schema")).then(|| JsonSchemaFormat {
        name: inner
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("output")
            .to_string(),
        schema: inner.get("schema").cloned().unwrap_or(json!({})),
        strict: inner.get("strict").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// How often a model call looks in the database for a cancellation made on another
/// replica (one made in this process stops it at once).
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// How a model call's text shows while it streams.
enum Display<'a> {
    /// As the assistant's message (`assistant.delta`).
    Text,
    /// As a widget filling in (`widget.delta` with the whole widget so far).
    Widget(&'a mut super::widget::WidgetStream),
    /// Not at all (a structured answer for the next steps).
    Hidden,
}

/// One model call, streamed: deltas are published live, usage is recorded. A
/// cancellation drops the stream, which aborts the HTTP request, and is reported as
/// [`LlmError::Cancelled`].
async fn call_model(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    provider: &ProviderCredentials,
    request: &ChatRequest,
    mut display: Display<'_>,
) -> Result<Completion, LlmError> {
    let cancelled = || LlmError::Cancelled;
    let mut stream = ctx.services.llm.stream(provider, request).await?;
    let mut signal = log.live.map(|l| l.cancelled());
    let mut check =
        tokio::time::interval_at(tokio::time::Instant::now() + CANCEL_CHECK, CANCEL_CHECK);
    let completion = loop {
        tokio::select! {
            event = stream.next() => match event {
                None => return Err(LlmError::MalformedStream("the stream ended without a final response".into())),
                Some(Err(err)) => return Err(err),
                Some(Ok(StreamEvent::Completed(done))) => break done,
                Some(Ok(StreamEvent::TextDelta(delta))) => match &mut display {
                    Display::Text => {
                        log.ephemeral(EventKind::AssistantDelta, &node.slug, json!({"delta": delta}));
                    }
                    Display::Widget(stream) => {
                        if let Some(widget) = stream.push(&delta) {
                            log.ephemeral(EventKind::WidgetDelta, &node.slug, json!({"widget": widget}));
                        }
                    }
                    Display::Hidden => {}
                },
                Some(Ok(StreamEvent::ReasoningDelta(delta))) => {
                    log.ephemeral(EventKind::ReasoningDelta, &node.slug, json!({"delta": delta}));
                }
                Some(Ok(StreamEvent::ToolCallStarted { index, id, name })) => {
                    log.ephemeral(EventKind::ToolCallDelta, &node.slug, json!({"index": index, "call_id": id, "name": name}));
                }
                Some(Ok(StreamEvent::ToolCallArgumentsDelta { index, delta })) => {
                    log.ephemeral(EventKind::ToolCallDelta, &node.slug, json!({"index": index, "delta": delta}));
                }
            },
            () = until_cancelled(&mut signal) => return Err(cancelled()),
            _ = check.tick() => {
                if let Ok(Some(stored)) = ctx.services.store.run(&log.run.id).await
                    && stored.status == RunStatus::Cancelled
                {
                    return Err(cancelled());
                }
            }
        }
    };
    record_usage(ctx, log, node, model, &completion).await;
    Ok(completion)
}

async fn until_cancelled(signal: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = signal
        && rx.wait_for(|v| *v).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Records a call's usage and cost; a failure to record is logged, not the step's failure
/// (the answer was already paid for).
async fn record_usage(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    completion: &Completion,
) {
    let mut record = usage::priced(
        completion,
        &model.name,
        Some(model.provider_id),
        Some(model.pricing),
        Purpose::Agent,
    );
    record.user_id = Some(ctx.user.id);
    record.workflow_id = Some(ctx.workflow.id);
    record.run_id = Some(log.run.id.clone());
    let cost = record.cost_usd;
    log.record_usage(ctx.services, record).await;
    log.event(EventKind::Usage, Some(&node.slug), json!({
        "model": model.name, "input_tokens": completion.usage.input_tokens, "output_tokens": completion.usage.output_tokens,
        "cached_input_tokens": completion.usage.cached_input_tokens, "reasoning_tokens": completion.usage.reasoning_tokens, "cost_usd": cost,
    }));
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
