//! `/api/admin/mcp-servers` (administrators register, probe and refresh MCP servers) and
//! `/api/mcp/servers` (what users may pick for their agents). Secrets never leave: answers
//! carry hints and names only.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use domain::mcp::{self, McpError, McpServer, McpServerInput, McpTool, McpTransport, ProbeReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AppQuery, AuthUser},
    routes::users::double_option,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_servers, create_server))
        .routes(routes!(get_server, update_server, delete_server))
        .routes(routes!(probe_server))
        .routes(routes!(probe_unsaved))
        .routes(routes!(list_public))
        .routes(routes!(oauth_start))
        .routes(routes!(oauth_callback))
        .routes(routes!(oauth_status))
}

impl From<McpError> for ApiError {
    fn from(err: McpError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

/// A tool as the server lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpToolResponse {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<Value>,
}

impl From<McpTool> for McpToolResponse {
    fn from(t: McpTool) -> Self {
        McpToolResponse {
            name: t.name,
            title: t.title,
            description: t.description,
            input_schema: t.input_schema,
            annotations: t.annotations,
        }
    }
}

fn tools(list: Option<Vec<McpTool>>) -> Option<Vec<McpToolResponse>> {
    list.map(|l| l.into_iter().map(Into::into).collect())
}

/// A server as administrators see it: secrets as hints, header and variable names only.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpServerResponse {
    pub id: i64,
    pub label: String,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: String,
    pub server_url: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env_names: Vec<String>,
    pub header_names: Vec<String>,
    pub authorization_hint: Option<String>,
    pub access_token_hint: Option<String>,
    pub has_refresh_token: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub oauth_client_id: Option<String>,
    pub has_oauth_client_secret: bool,
    pub oauth_scope: Option<String>,
    pub is_active: bool,
    pub timeout_secs: u64,
    pub max_concurrency: u32,
    pub tools_cache: Option<Vec<McpToolResponse>>,
    pub tools_cache_updated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// After a create or update with `refresh_tools`: how the probe went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeResponse>,
}

impl From<McpServer> for McpServerResponse {
    fn from(s: McpServer) -> Self {
        McpServerResponse {
            id: s.id,
            label: s.label,
            transport: s.transport.as_str().into(),
            server_url: s.url,
            command: s.command,
            args: s.args,
            env_names: s.env_names,
            header_names: s.header_names,
            authorization_hint: s.authorization_hint,
            access_token_hint: s.access_token_hint,
            has_refresh_token: s.refresh_token_encrypted.is_some(),
            token_expires_at: s.token_expires_at,
            oauth_client_id: s.oauth_client_id,
            has_oauth_client_secret: s.oauth_client_secret_encrypted.is_some(),
            oauth_scope: s.oauth_scope,
            is_active: s.is_active,
            timeout_secs: s.timeout_secs,
            max_concurrency: s.max_concurrency,
            tools_cache: tools(s.tools_cache),
            tools_cache_updated_at: s.tools_cache_updated_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
            probe: None,
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{host}")
        }
        None => String::new(),
    }
}

/// A server as users see it, to choose tools for their agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpServerPublicResponse {
    pub id: i64,
    pub label: String,
    pub transport: String,
    pub server_url: Option<String>,
    pub is_active: bool,
    pub tools_cache: Option<Vec<McpToolResponse>>,
    pub tools_cache_updated_at: Option<DateTime<Utc>>,
    pub has_authorization: bool,
    pub has_access_token: bool,
}

/// Register (`label` and `server_url` or `command` required) or change a server; absent
/// fields stay as they are, and `null` removes a secret.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerRequest {
    #[serde(default)]
    pub label: Option<String>,
    /// `streamable_http` (default), `sse` (also `http_sse`) or `stdio`.
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub server_url: Option<Option<String>>,
    /// For `stdio`: the program, its arguments and extra environment variables.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub command: Option<Option<String>>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Stored encrypted; replaces every variable.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Stored encrypted; replaces every extra header.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The Authorization header's value (`Bearer ` is added to a bare token); encrypted.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub authorization: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub access_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub oauth_client_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub oauth_client_secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub oauth_scope: Option<Option<String>>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// The deadline of each request to the server (default 30 s).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Calls in flight at once (default 4).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Probe the server and cache its tools after saving (default true).
    #[serde(default)]
    pub refresh_tools: Option<bool>,
}

impl McpServerRequest {
    fn input(self) -> Result<(McpServerInput, bool), ApiError> {
        let transport = self
            .transport
            .map(|t| {
                McpTransport::parse(&t).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        "transport must be one of: streamable_http, sse, stdio",
                    )
                })
            })
            .transpose()?;
        Ok((
            McpServerInput {
                label: self.label,
                transport,
                url: self.server_url,
                command: self.command,
                args: self.args,
                env: self.env,
                headers: self.headers,
                authorization: self.authorization,
                access_token: self.access_token,
                refresh_token: self.refresh_token,
                oauth_client_id: self.oauth_client_id,
                oauth_client_secret: self.oauth_client_secret,
                oauth_scope: self.oauth_scope,
                is_active: self.is_active,
                timeout_secs: self.timeout_secs,
                max_concurrency: self.max_concurrency,
            },
            self.refresh_tools.unwrap_or(true),
        ))
    }
}

/// How a probe went.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeResponse {
    /// `ok`, `unauthorized`, `forbidden`, `timeout`, `unreachable`, `protocol_error`,
    /// `error` or `invalid`.
    pub status: String,
    pub message: String,
    pub tools: Vec<McpToolResponse>,
    pub tool_names: Vec<String>,
    pub latency_ms: u64,
}

impl From<ProbeReport> for ProbeResponse {
    fn from(r: ProbeReport) -> Self {
        ProbeResponse {
            status: r.status.into(),
            message: r.message,
            tool_names: r.tools.iter().map(|t| t.name.clone()).collect(),
            tools: r.tools.into_iter().map(Into::into).collect(),
            latency_ms: r.latency_ms,
        }
    }
}

fn with_probe(server: McpServer, probe: Option<ProbeReport>) -> McpServerResponse {
    let mut response = McpServerResponse::from(server);
    response.probe = probe.map(Into::into);
    response
}

#[utoipa::path(get, path = "/api/admin/mcp-servers", tag = "mcp", security(("bearer" = [])),
    responses((status = 200, body = Vec<McpServerResponse>), (status = 403, body = ErrorBody)))]
async fn list_servers(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<McpServerResponse>>> {
    let list = mcp::list_servers(&state.services, &admin).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Registers a server; its secrets are stored encrypted. Unless `refresh_tools` is false it
/// is probed and its tools cached; the answer's `probe` says how that went (a server that
/// cannot be reached is saved all the same).
#[utoipa::path(post, path = "/api/admin/mcp-servers", tag = "mcp", security(("bearer" = [])),
    request_body = McpServerRequest,
    responses(
        (status = 201, body = McpServerResponse),
        (status = 403, body = ErrorBody),
        (status = 409, description = "Label taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_server(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<McpServerRequest>,
) -> ApiResult<(StatusCode, Json<McpServerResponse>)> {
    let (input, refresh) = req.input()?;
    let (server, probe) = mcp::create_server(&state.services, &admin, input, refresh).await?;
    Ok((StatusCode::CREATED, Json(with_probe(server, probe))))
}

#[utoipa::path(get, path = "/api/admin/mcp-servers/{id}", tag = "mcp", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = McpServerResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_server(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<McpServerResponse>> {
    Ok(Json(
        mcp::get_server(&state.services, &admin, id).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/api/admin/mcp-servers/{id}", tag = "mcp", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = McpServerRequest,
    responses(
        (status = 200, body = McpServerResponse),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_server(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<McpServerRequest>,
) -> ApiResult<Json<McpServerResponse>> {
    let (input, refresh) = req.input()?;
    let (server, probe) = mcp::update_server(&state.services, &admin, id, input, refresh).await?;
    Ok(Json(with_probe(server, probe)))
}

#[utoipa::path(delete, path = "/api/admin/mcp-servers/{id}", tag = "mcp", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_server(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<StatusCode> {
    mcp::delete_server(&state.services, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Connects afresh, lists the tools and caches them when the server answers.
#[utoipa::path(post, path = "/api/admin/mcp-servers/{id}/probe", tag = "mcp", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = ProbeResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn probe_server(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<ProbeResponse>> {
    Ok(Json(
        mcp::probe_server(&state.services, &admin, id).await?.into(),
    ))
}

/// Tries a configuration before saving it (nothing is stored). With `server_id`, the
/// saved server's settings and secrets are used under the fields given.
// No `deny_unknown_fields` here: serde does not support it with `flatten`; the flattened
// request refuses unknown fields itself.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProbeRequest {
    #[serde(default)]
    pub server_id: Option<i64>,
    #[serde(flatten)]
    pub server: McpServerRequest,
}

#[utoipa::path(post, path = "/api/admin/mcp-servers/probe", tag = "mcp", security(("bearer" = [])),
    request_body = ProbeRequest,
    responses((status = 200, body = ProbeResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn probe_unsaved(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<ProbeRequest>,
) -> ApiResult<Json<ProbeResponse>> {
    let (input, _) = req.server.input()?;
    Ok(Json(
        mcp::probe_config(&state.services, &admin, req.server_id, input)
            .await?
            .into(),
    ))
}

/// The active servers and their tools, for choosing an agent's tools.
#[utoipa::path(get, path = "/api/mcp/servers", tag = "mcp", security(("bearer" = [])),
    responses((status = 200, body = Vec<McpServerPublicResponse>), (status = 401, body = ErrorBody)))]
async fn list_public(
    State(state): State<AppState>,
    _user: AuthUser,
) -> ApiResult<Json<Vec<McpServerPublicResponse>>> {
    let list = mcp::active_servers(&state.services).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| McpServerPublicResponse {
                id: s.id,
                label: s.label,
                transport: s.transport.as_str().into(),
                // A stdio server's command line is not the users' business, nor a URL's path
                // and query, where hosted servers often carry their key.
                server_url: s.url.as_deref().map(origin),
                is_active: s.is_active,
                tools_cache: tools(s.tools_cache),
                tools_cache_updated_at: s.tools_cache_updated_at,
                has_authorization: s.authorization_encrypted.is_some(),
                has_access_token: s.access_token_encrypted.is_some(),
            })
            .collect(),
    ))
}

/// Starts OAuth for a server.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthStartRequest {
    /// Where the authorization server sends the browser back; by default this server's
    /// `/api/mcp/oauth/callback`, as the request reached it.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthStartResponse {
    /// Open this in the administrator's browser.
    pub authorization_url: String,
    pub state: String,
    pub redirect_uri: String,
    pub expires_in: i64,
}

/// Starts authorising the server with OAuth 2.1: discovers its authorization server,
/// registers a client when it has no `oauth_client_id`, and answers the URL to open. The
/// flow ends at the callback, on any replica.
#[utoipa::path(post, path = "/api/admin/mcp-servers/{id}/oauth/start", tag = "mcp", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = OAuthStartRequest,
    responses((status = 200, body = OAuthStartResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn oauth_start(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    headers: HeaderMap,
    AppJson(req): AppJson<OAuthStartRequest>,
) -> ApiResult<Json<OAuthStartResponse>> {
    let redirect_uri = match req.redirect_uri {
        Some(uri) => uri,
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let scheme = if state.http.trust_proxy_headers {
                headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("http")
            } else {
                "http"
            };
            format!("{scheme}://{host}/api/mcp/oauth/callback")
        }
    };
    let started =
        domain::mcp::oauth::start(&state.services, &admin, id, &redirect_uri, req.scope).await?;
    Ok(Json(OAuthStartResponse {
        authorization_url: started.authorization_url,
        state: started.state,
        redirect_uri,
        expires_in: started.expires_in,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where the authorization server sends the browser back. It needs no login: the
/// unguessable, single-use `state` ties it to the flow an administrator started.
#[utoipa::path(get, path = "/api/mcp/oauth/callback", tag = "mcp",
    params(CallbackQuery),
    responses((status = 200, description = "An HTML page saying the server is connected", content_type = "text/html"),
              (status = 400, description = "An HTML page saying why not", content_type = "text/html")))]
async fn oauth_callback(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<CallbackQuery>,
) -> Response {
    let page = |status: StatusCode, title: &str, detail: &str| {
        (
            status,
            Html(format!(
                "<!doctype html><meta charset=\"utf-8\"><title>{0}</title><h1>{0}</h1><p>{1}</p>",
                escape(title),
                escape(detail)
            )),
        )
            .into_response()
    };
    let Some(flow) = query.state.as_deref() else {
        return page(
            StatusCode::BAD_REQUEST,
            "Authorisation failed",
            "The callback carries no state.",
        );
    };
    let error = query
        .error
        .as_ref()
        .map(|e| match &query.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e.clone(),
        });
    match domain::mcp::oauth::callback(
        &state.services,
        flow,
        query.code.as_deref(),
        error.as_deref(),
    )
    .await
    {
        Ok(_) => page(
            StatusCode::OK,
            "Connected",
            "The MCP server is authorised. You can close this window.",
        ),
        Err(err) => page(
            StatusCode::BAD_REQUEST,
            "Authorisation failed",
            &err.to_string(),
        ),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthStatusResponse {
    pub state: String,
    pub server_id: i64,
    /// `pending`, `done` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// How an authorisation is going (poll it while the browser is away).
#[utoipa::path(get, path = "/api/admin/mcp-servers/oauth/{state}", tag = "mcp", security(("bearer" = [])),
    params(("state" = String, Path)),
    responses((status = 200, body = OAuthStatusResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn oauth_status(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(flow): AppPath<String>,
) -> ApiResult<Json<OAuthStatusResponse>> {
    let session = domain::mcp::oauth::session(&state.services, &admin, &flow).await?;
    let status = if session.status == "pending" && session.expires_at <= Utc::now() {
        "expired".to_string()
    } else {
        session.status
    };
    Ok(Json(OAuthStatusResponse {
        state: session.state,
        server_id: session.server_id,
        status,
        error: session.error,
        expires_at: session.expires_at,
    }))
}
