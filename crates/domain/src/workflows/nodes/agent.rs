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

use serde_json::json;

use super::{Kind, NodeKind, Problems, Resumed, StepFuture, check_config, has_extra, refused};
use crate::workflows::{expr, schema};
use crate::{
    knowledge::names_store,
    runs::{
        EventKind, Resume, Run, RunResult, Wait, WaitKind, agent,
        step::{Log, RunCtx},
    },
    workflows::{
        Graph, Node,
        import::{AbNode, expression, text_from_expression},
        references::Reference,
    },
};

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

pub const KIND: Kind = Kind::of(&AgentKind);

struct AgentKind;

impl NodeKind for AgentKind {
    fn name(&self) -> &'static str {
        "agent"
    }

    /// The seed's agents may name their provider twice (`model_provider` and
    /// `model_provider_slug`, which this config reads as one field): the seed read
    /// `model_provider_slug`, and so does the import, with a warning when they differ.
    fn import_seed(&self, params: &mut Map<String, Value>, problems: &mut Problems) {
        let (Some(general), Some(kept)) = (
            params.get("model_provider").cloned(),
            params.get("model_provider_slug").cloned(),
        ) else {
            return;
        };
        if general != kept {
            problems.warning(
                "duplicate_key",
                Some("parameters.model_provider_slug"),
                format!("the agent named its provider twice (`model_provider` {general}, `model_provider_slug` {kept}); kept `model_provider_slug`"),
            );
        }
        params.remove("model_provider");
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Agent>(params, problems, Agent::check)
    }

    fn effectful(&self) -> bool {
        true
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        Box::pin(async move {
            let scope = ctx.scope(log.run);
            agent::run(ctx, log, node, &scope).await
        })
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["Agent"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("on_result".into(), String::new());
        import_agent(node);
        Ok(())
    }

    /// A decision on a tool call, or a client tool's result: the agent goes on with it.
    fn resume(
        &self,
        log: &mut Log<'_>,
        node: &Node,
        wait: &Wait,
        answer: Resume,
        _graph: &Graph,
    ) -> RunResult<Resumed> {
        match (wait.kind, answer) {
            (WaitKind::Approval, Resume::Approval(approved)) => {
                log.event(
                    EventKind::Approval,
                    Some(&node.slug),
                    json!({"approved": approved}),
                );
                if agent::accept_approval(log.run, &node.slug, approved) {
                    Ok(Resumed::Reenter)
                } else {
                    // No tool call waits (a run saved by an older version): the decision
                    // routes like an approval step's.
                    log.run.last_output = json!({"approved": approved});
                    Ok(Resumed::Follow(Some(
                        if approved { "approve" } else { "reject" }.to_string(),
                    )))
                }
            }
            (WaitKind::ClientToolOutput, Resume::ClientToolOutput(output)) => {
                log.event(
                    EventKind::ToolCallOutput,
                    Some(&node.slug),
                    json!({"call": wait.data, "output": output}),
                );
                agent::accept_client_output(log.run, &node.slug, output)?;
                Ok(Resumed::Reenter)
            }
            _ => Err(refused(wait)),
        }
    }

    /// An agent re-entered with a client tool's result does not keep that conversation
    /// once it failed: the next attempt (or node) starts afresh.
    fn forget_attempt(&self, run: &mut Run, node: &Node) {
        agent::forget_turn(run, &node.slug);
    }

    /// With `workflow`, the node runs another workflow.
    fn references(&self, params: &Map<String, Value>) -> Vec<(&'static str, Reference)> {
        let Some(workflow) = params.get("workflow") else {
            return Vec::new();
        };
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let id = workflow.get("id").and_then(Value::as_i64);
        let slug = text(workflow.get("slug")).or_else(|| text(Some(workflow)));
        vec![("parameters.workflow", Reference::Workflow { id, slug })]
    }

    fn uses_store(&self, params: &Map<String, Value>, slug: &str) -> bool {
        params
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| {
                tools.iter().any(|t| {
                    matches!(
                        t.get("type").and_then(Value::as_str),
                        Some("file_search" | "knowledge")
                    ) && names_store(t, slug)
                })
            })
    }
}

/// Agent Builder's agent settings as ours.
fn import_agent(node: &mut AbNode<'_, '_>) {
    let config = node.config.clone();
    let config = &config;
    let params = &mut node.params;
    let mut warnings: Vec<(&'static str, String)> = Vec::new();
    if let Some(instructions) = text_from_expression(config.get("instructions")) {
        params.insert("instructions".into(), json!(instructions));
    }
    if let Some(model) = text_from_expression(config.get("model")) {
        params.insert("model".into(), json!(model));
    }
    let mut settings = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_output_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("reasoning", "reasoning"),
        ("reads_from_history", "include_chat_history"),
        ("writes_to_history", "writes_to_history"),
        ("user_visible", "response_in_chat"),
        ("show_progress_to_user", "show_progress_to_user"),
    ] {
        if let Some(value) = config.get(from).filter(|v| !v.is_null()) {
            settings.insert(to.into(), value.clone());
        }
    }
    if let Some(verbosity) = config
        .get("text")
        .and_then(|t| t.get("verbosity"))
        .filter(|v| !v.is_null())
    {
        settings.insert("text".into(), json!({"verbosity": verbosity}));
    }
    if !settings.is_empty() {
        params.insert("model_settings".into(), Value::Object(settings));
    }
    if let Some(format) = config
        .get("text")
        .and_then(|t| t.get("format"))
        .filter(|f| f.get("type").is_some())
    {
        params.insert("response_format".into(), format.clone());
    }
    if let Some(messages) = config
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    {
        params.insert("messages".into(), json!(messages));
    }
    if let Some(tools) = config
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        params.insert("tools".into(), json!(tools));
        if tools
            .iter()
            .any(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        {
            warnings.push((
                "tool_needs_binding",
                "function tools came without an implementation; define them in the tool library"
                    .into(),
            ));
        }
    }
    if let Some(widget) = config.get("widget_config").filter(|w| !w.is_null()) {
        params.insert("widget".into(), json!({"source": "variable", "definition_expression": "input.output_parsed", "agent_builder": widget}));
        warnings.push((
            "widget_template",
            "the Agent Builder widget template was kept for reference; check the widget settings"
                .into(),
        ));
    }
    for mapping in config
        .get("variable_mapping")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = mapping
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        if expression(mapping.get("expression")).as_deref() != Some(name) {
            warnings.push(("variable_mapping", format!("the placeholder `{{{{{name}}}}}` was mapped to another expression in Agent Builder; here it is evaluated as written")));
        }
    }
    for (code, message) in warnings {
        node.warn(code, message);
    }
}
