//! `/mcp`: Switchyard as an MCP server (streamable HTTP, stateless): the published
//! workflows administrators offer as tools, listed and run for the caller's user; and
//! `/api/admin/mcp-tools`, where administrators choose them.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use domain::mcp::server::{self as mcp_server, ExposeError, ExposedWorkflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
};

/// Protocol versions this endpoint negotiates; the newest is answered to any other.
const VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(endpoint, no_stream, no_session))
        .routes(routes!(list_exposed))
        .routes(routes!(expose, unexpose))
}

impl From<ExposeError> for ApiError {
    fn from(err: ExposeError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

/// A workflow offered as a tool.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExposedResponse {
    pub workflow_id: i64,
    pub tool_name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ExposedWorkflow> for ExposedResponse {
    fn from(e: ExposedWorkflow) -> Self {
        ExposedResponse {
            workflow_id: e.workflow_id,
            tool_name: e.tool_name,
            description: e.description,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExposeRequest {
    /// Defaults to the workflow's slug.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// Defaults to the workflow's description.
    #[serde(default)]
    pub description: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/mcp-tools", tag = "mcp", security(("bearer" = [])),
    responses((status = 200, body = Vec<ExposedResponse>), (status = 403, body = ErrorBody)))]
async fn list_exposed(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<ExposedResponse>>> {
    let list = mcp_server::list_exposed(&state.services, &admin).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Offers a workflow at `/mcp` as a tool (its production version runs), or renames it.
#[utoipa::path(put, path = "/api/admin/mcp-tools/{workflow_id}", tag = "mcp", security(("bearer" = [])),
    params(("workflow_id" = i64, Path)),
    request_body = ExposeRequest,
    responses(
        (status = 200, body = ExposedResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Tool name taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn expose(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(workflow_id): AppPath<i64>,
    AppJson(req): AppJson<ExposeRequest>,
) -> ApiResult<Json<ExposedResponse>> {
    let exposed = mcp_server::expose(
        &state.services,
        &admin,
        workflow_id,
        req.tool_name,
        req.description,
    )
    .await?;
    Ok(Json(exposed.into()))
}

#[utoipa::path(delete, path = "/api/admin/mcp-tools/{workflow_id}", tag = "mcp", security(("bearer" = [])),
    params(("workflow_id" = i64, Path)),
    responses((status = 204, description = "No longer offered"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unexpose(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(workflow_id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    mcp_server::unexpose(&state.services, &admin, workflow_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The MCP endpoint (streamable HTTP, JSON answers, no session): `initialize`, `ping`,
/// `tools/list` and `tools/call` over the workflows offered as tools. Authenticate with an
/// API key (`Authorization: Bearer sy_…`); tools run as the key's user.
#[utoipa::path(post, path = "/mcp", tag = "mcp", security(("bearer" = [])),
    request_body(content = Object, description = "A JSON-RPC 2.0 message or batch"),
    responses(
        (status = 200, description = "The JSON-RPC answer", body = Object),
        (status = 202, description = "Notifications accepted"),
        (status = 400, description = "Not JSON-RPC", body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Origin not allowed", body = ErrorBody),
    ))]
async fn endpoint(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Browsers' requests from other sites are refused (DNS rebinding).
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !state
            .http
            .cors_allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not call /mcp (http.cors_allowed_origins)",
        )
        .into_response();
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(rpc_error(Value::Null, -32700, format!("not JSON: {err}"))),
            )
                .into_response();
        }
    };
    let (batch, messages) = match message {
        Value::Array(items) if !items.is_empty() => (true, items),
        Value::Object(_) => (false, vec![message]),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(rpc_error(Value::Null, -32600, "not a JSON-RPC message")),
            )
                .into_response();
        }
    };
    let mut answers = Vec::new();
    for message in messages {
        if let Some(answer) = handle(&state, &user, message).await {
            answers.push(answer);
        }
    }
    match (batch, answers.len()) {
        (_, 0) => StatusCode::ACCEPTED.into_response(),
        (false, _) => Json(answers.remove(0)).into_response(),
        (true, _) => Json(Value::Array(answers)).into_response(),
    }
}

/// Answers one message; notifications and responses get nothing.
async fn handle(state: &AppState, user: &domain::users::User, message: Value) -> Option<Value> {
    let method = message.get("method").and_then(Value::as_str)?.to_string();
    let id = message.get("id").cloned()?;
    let params = message.get("params").cloned().unwrap_or(json!({}));
    Some(match method.as_str() {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let version = if VERSIONS.contains(&asked) {
                asked
            } else {
                VERSIONS[VERSIONS.len() - 1]
            };
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "switchyard", "title": "Switchyard", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Each tool runs a published Switchyard workflow and returns its output.",
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => match mcp_server::offered_tools(&state.services, user).await {
            Ok(tools) => rpc_result(
                id,
                json!({"tools": tools.into_iter().map(|t| json!({
                    "name": t.name, "title": t.title, "description": t.description, "inputSchema": t.input_schema,
                })).collect::<Vec<_>>()}),
            ),
            Err(err) => rpc_error(id, -32603, err.to_string()),
        },
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return Some(rpc_error(id, -32602, "tools/call needs a `name`"));
            };
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            match mcp_server::call(&state.services, user, name, arguments).await {
                Ok(Some(run)) => {
                    let text = match &run.output {
                        Value::String(text) => text.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    let mut result = json!({
                        "content": [{"type": "text", "text": text}],
                        "isError": run.is_error,
                    });
                    if run.output.is_object() {
                        result["structuredContent"] = run.output.clone();
                    }
                    if let Some(run_id) = run.run_id {
                        result["_meta"] = json!({"switchyard/run_id": run_id});
                    }
                    rpc_result(id, result)
                }
                Ok(None) => rpc_error(id, -32602, format!("there is no tool `{name}`")),
                Err(err) => rpc_error(id, -32603, err.to_string()),
            }
        }
        other => rpc_error(id, -32601, format!("this server does not offer `{other}`")),
    })
}

/// No server-initiated stream is offered.
#[utoipa::path(get, path = "/mcp", tag = "mcp",
    responses((status = 405, description = "No event stream is offered; POST messages instead")))]
async fn no_stream() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        Json(json!({"code": "method_not_allowed", "message": "this MCP endpoint offers no event stream; POST JSON-RPC messages"})),
    )
        .into_response()
}

/// There is no session to end.
#[utoipa::path(delete, path = "/mcp", tag = "mcp",
    responses((status = 405, description = "The endpoint keeps no sessions")))]
async fn no_session() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        Json(
            json!({"code": "method_not_allowed", "message": "this MCP endpoint keeps no sessions"}),
        ),
    )
        .into_response()
}
