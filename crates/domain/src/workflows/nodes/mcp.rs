//! `mcp`: calls one tool of a registered MCP server as a step; its arguments are
//! templates and expressions (as in `transform`), and its result is the next step's
//! `input` (`{text, structured, content, is_error}`).
//!
//! ```json
//! {"server_id": 1, "tool": "add", "arguments": {"a": "{{ state.count }}", "b": "input.output_parsed.b"}}
//! ```
//! A failure (the server unreachable, the tool's own error) follows the `error` edge when
//! there is one.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, has_extra};
use crate::workflows::expr;
use crate::{
    runs::{
        mcp_step,
        step::{Log, RunCtx},
    },
    workflows::{Node, import::AbNode},
};

pub(crate) const EXAMPLE: &str =
    r#"{"server_id": 1, "tool": "add", "arguments": {"a": "{{ state.count }}", "b": 2}}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct McpCall {
    #[serde(default)]
    pub server_id: Option<i64>,
    #[serde(default, alias = "tool_name")]
    pub tool: Option<String>,
    #[serde(default)]
    pub arguments: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(McpCall);

impl McpCall {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.server_id.is_none() {
            problems.error(
                "invalid_parameter",
                Some("parameters.server_id"),
                "an MCP step needs the `server_id` of a registered server",
            );
        }
        if self.tool.as_deref().is_none_or(|t| t.trim().is_empty()) {
            problems.error(
                "invalid_parameter",
                Some("parameters.tool"),
                "an MCP step needs the `tool` to call",
            );
        }
        match &self.arguments {
            None | Some(Value::Object(_)) => {}
            Some(Value::String(_)) => {}
            Some(_) => problems.error(
                "invalid_parameter",
                Some("parameters.arguments"),
                "must be an object (or a template giving one)",
            ),
        }
        if let Some(arguments) = &self.arguments {
            expr::check_templates_in(arguments, "parameters.arguments", problems);
        }
    }
}

pub const KIND: Kind = Kind::of(&McpKind);

struct McpKind;

impl NodeKind for McpKind {
    fn name(&self) -> &'static str {
        "mcp"
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["MCP"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("out".into(), String::new());
        node.ports.insert("on_result".into(), String::new());
        node.params = node.config.as_object().cloned().unwrap_or_default();
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<McpCall>(params, problems, McpCall::check)
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
            mcp_step::call(ctx, log, node, &scope).await
        })
    }
}
