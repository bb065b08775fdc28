//! The `mcp` step: one tool call on a registered MCP server, its arguments rendered from
//! the run's scope, its result as the next step's `input`.

use serde_json::{Value, json};

use super::EventKind;
use super::step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse};
use crate::{
    mcp,
    workflows::{Node, eval::Scope, nodes},
};

pub(crate) async fn call(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
) -> Result<Outcome, NodeError> {
    let config: nodes::mcp::McpCall = parse(node)?;
    let (Some(server_id), Some(tool)) = (config.server_id, config.tool.clone()) else {
        return Err(node_error(
            "invalid_parameters",
            "an MCP step needs `server_id` and `tool`",
        ));
    };
    let arguments = match &config.arguments {
        Some(arguments) => scope.render_tree(arguments)?,
        None => json!({}),
    };
    let arguments = match arguments {
        Value::Object(map) => Value::Object(map),
        Value::String(text) => serde_json::from_str::<Value>(&text)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                node_error("invalid_arguments", "the arguments are not a JSON object")
            })?,
        _ => {
            return Err(node_error(
                "invalid_arguments",
                "the arguments are not a JSON object",
            ));
        }
    };
    let server = mcp::server(ctx.services, server_id)
        .await
        .map_err(|err| node_error("mcp_server_not_found", err.to_string()))?;
    if !server.is_active {
        return Err(node_error(
            "mcp_server_inactive",
            format!("the MCP server {} is turned off", server.label),
        ));
    }
    let label = server.label.clone();
    let connection = crate::mcp::oauth::connect_info(ctx.services, server)
        .await
        .map_err(|err| node_error("mcp_unavailable", err.to_string()))?;
    log.event(
        EventKind::ToolCallStarted,
        Some(&node.slug),
        json!({"call_id": format!("mcp_{}", node.slug), "name": tool, "server": label, "arguments": arguments}),
    );
    let result = ctx
        .services
        .mcp
        .call_tool(&connection, &tool, arguments)
        .await
        .map_err(|err| {
            let code = match err {
                mcp::McpFailure::Timeout => "mcp_timeout",
                mcp::McpFailure::Unauthorized(_) | mcp::McpFailure::Forbidden(_) => {
                    "mcp_unauthorized"
                }
                mcp::McpFailure::Unreachable(_) => "mcp_unreachable",
                _ => "mcp_error",
            };
            node_error(code, err.to_string())
        })?;
    let output = json!({
        "text": result.text,
        "structured": result.structured,
        "content": result.content,
        "is_error": result.is_error,
    });
    log.event(
        EventKind::ToolCallFinished,
        Some(&node.slug),
        json!({"call_id": format!("mcp_{}", node.slug), "name": tool, "output": output}),
    );
    if result.is_error {
        return Err(node_error(
            "mcp_tool_error",
            format!("the tool `{tool}` failed: {}", result.text),
        ));
    }
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}
