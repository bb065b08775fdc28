//! The agent step: a model call with instructions, history, tools and structured output,
//! streamed live, in a bounded tool-call loop that may pause for a client tool or for a
//! person's approval. `tools` resolves and runs the tools an agent may call (and when a
//! call needs approval), `prompt` builds what the model is sent (model, messages, files,
//! response format), `call` streams one model call.
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
    step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
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

mod call;
mod prompt;
mod tools;

use call::*;
use prompt::*;
use tools::*;

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
    let caller_named = apply_model_choice(log, node, &mut config);
    let model = resolve_model(ctx, log, node, &config, caller_named).await?;
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
                return Err(NodeError::Cancelled);
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
