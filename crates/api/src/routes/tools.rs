//! `/api/tools`: defined tools. Administrators create, change and delete them (secret
//! header values are stored encrypted and answered as hints); every user lists them, to
//! choose an agent's tools.

use std::collections::BTreeMap;

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use domain::tools::{self, ToolDef, ToolError, ToolInput, ToolKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
    routes::users::double_option,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tools, create_tool))
        .routes(routes!(get_tool, update_tool, delete_tool))
}

impl From<ToolError> for ApiError {
    fn from(err: ToolError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

/// A defined tool. Users see its name, kind, description and parameters; administrators
/// also its configuration and the hints of its secret headers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolResponse {
    pub id: i64,
    pub name: String,
    /// `http`, `client`, `workflow` or `knowledge`.
    pub kind: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// `never` or `always`.
    pub approval: String,
    pub is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_headers: Option<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn response(state: &AppState, tool: ToolDef, full: bool) -> ToolResponse {
    let secret_headers = full.then(|| tools::secret_hints(&state.services, &tool));
    ToolResponse {
        id: tool.id,
        name: tool.name,
        kind: tool.kind.as_str().into(),
        description: tool.description,
        parameters: tool.parameters,
        approval: tool.approval,
        is_active: tool.is_active,
        config: full.then_some(tool.config),
        secret_headers,
        created_at: tool.created_at,
        updated_at: tool.updated_at,
    }
}

/// Define (`name` and `kind` required) or change a tool; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// `http`, `client`, `workflow` or `knowledge`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// JSON Schema (`type: object`) of the arguments.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// `http`: `{url, method, headers, timeout_secs, max_response_bytes, response_path,
    /// allow_private_network}`; `workflow`: `{workflow_id}`; `knowledge`:
    /// `{vector_store_slugs, top_k}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Stored encrypted; replaces every secret header.
    #[serde(default)]
    pub secret_headers: Option<BTreeMap<String, String>>,
    /// `never` (default) or `always`.
    #[serde(default)]
    pub approval: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

impl TryFrom<ToolRequest> for ToolInput {
    type Error = ApiError;

    fn try_from(r: ToolRequest) -> Result<Self, ApiError> {
        let kind = r
            .kind
            .map(|k| {
                ToolKind::parse(&k).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        "kind must be one of: http, client, workflow, knowledge",
                    )
                })
            })
            .transpose()?;
        Ok(ToolInput {
            name: r.name,
            kind,
            description: r.description,
            parameters: r.parameters,
            config: r.config,
            secret_headers: r.secret_headers,
            approval: r.approval,
            is_active: r.is_active,
        })
    }
}

#[utoipa::path(get, path = "/api/tools", tag = "tools", security(("bearer" = [])),
    responses((status = 200, body = Vec<ToolResponse>), (status = 401, body = ErrorBody)))]
async fn list_tools(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Vec<ToolResponse>>> {
    let list = tools::list_tools(&state.services, &user).await?;
    Ok(Json(
        list.into_iter()
            .map(|t| response(&state, t, user.is_admin))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/tools", tag = "tools", security(("bearer" = [])),
    request_body = ToolRequest,
    responses(
        (status = 201, body = ToolResponse),
        (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_tool(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<ToolRequest>,
) -> ApiResult<(StatusCode, Json<ToolResponse>)> {
    let tool = tools::create_tool(&state.services, &admin.user, req.try_into()?).await?;
    Ok((StatusCode::CREATED, Json(response(&state, tool, true))))
}

#[utoipa::path(get, path = "/api/tools/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ToolResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_tool(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<ToolResponse>> {
    let tool = tools::tool_for(&state.services, &admin.user, id).await?;
    Ok(Json(response(&state, tool, true)))
}

#[utoipa::path(patch, path = "/api/tools/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = ToolRequest,
    responses(
        (status = 200, body = ToolResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_tool(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ToolRequest>,
) -> ApiResult<Json<ToolResponse>> {
    let tool = tools::update_tool(&state.services, &admin.user, id, req.try_into()?).await?;
    Ok(Json(response(&state, tool, true)))
}

#[utoipa::path(delete, path = "/api/tools/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_tool(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    tools::delete_tool(&state.services, &admin.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
