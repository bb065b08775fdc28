//! `/api/chatkit`: the ChatKit server protocol. One `POST` endpoint; the request's `type`
//! decides whether the answer is a stream of server-sent events (`data: <json>`, with
//! `: ping` comments while idle) or one JSON document. Malformed requests get a 400 JSON
//! error before any stream starts. A turn's events come from the conversation core
//! (`domain::chat::respond`) and are mapped onto the protocol by [`adapter`].

mod adapter;

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use chatkit::{Page, Request, StreamEvent, ThreadItem, TranscriptionResult};
use domain::chat::TurnEvent;
use domain::{
    chat::{self, ChatError, PageRequest, Turn, appearance, attachments, sessions},
    models,
};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AppQuery, AuthUser},
};

pub fn router(max_upload: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload))
        // Attachments may be larger than other request bodies (and multipart adds a little).
        .layer(DefaultBodyLimit::max(max_upload.saturating_add(64 * 1024)));
    OpenApiRouter::new()
        .routes(routes!(chatkit))
        .routes(routes!(content))
        .routes(routes!(chat_workflow))
        .routes(routes!(appearance))
        .routes(routes!(
            get_global_appearance,
            set_global_appearance,
            replace_global_appearance
        ))
        .routes(routes!(
            get_workflow_appearance,
            set_workflow_appearance,
            replace_workflow_appearance
        ))
        .routes(routes!(create_session))
        .routes(routes!(list_feedback))
        .routes(routes!(cancel_session))
        .merge(uploads)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedbackQuery {
    pub thread_id: Option<String>,
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<i64>,
}

/// What users said of the answers (`items.feedback`), newest first, with each item.
#[utoipa::path(get, path = "/api/admin/chat-feedback", tag = "chatkit", security(("bearer" = [])),
    params(FeedbackQuery),
    responses((status = 200, description = "`[{thread_id, item_id, user_id, kind, created_at, item}]`"), (status = 403, body = ErrorBody)))]
async fn list_feedback(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppQuery(query): AppQuery<FeedbackQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    let list = chat::list_feedback(
        &state.services,
        &admin,
        query.thread_id.as_deref(),
        query.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(
        list.into_iter()
            .map(|f| {
                json!({"thread_id": f.thread_id, "item_id": f.item_id, "user_id": f.user_id, "kind": f.kind,
                       "created_at": f.created_at, "item": f.item})
            })
            .collect(),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionWorkflow {
    pub id: i64,
    /// A version number to pin; the production version otherwise.
    #[serde(default)]
    pub version: Option<i64>,
    /// Values the session's runs start with.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub state_variables: Option<Value>,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ExpiresAfter {
    /// Only `created_at`.
    #[serde(default)]
    pub anchor: Option<String>,
    pub seconds: u64,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct RateLimits {
    pub max_requests_per_1_minute: i64,
}

/// An embedded session's request, as OpenAI's hosted ChatKit takes it: `workflow` is
/// `{id, version?, state_variables?}` (a bare `workflow_id` works too).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[serde(default)]
    pub workflow: Option<SessionWorkflow>,
    #[serde(default)]
    pub workflow_id: Option<i64>,
    #[serde(default)]
    pub version: Option<i64>,
    /// Your identifier for the end user; their threads are theirs alone.
    pub user: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub state_variables: Option<Value>,
    #[serde(default)]
    pub expires_after: Option<ExpiresAfter>,
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
}

fn session_json(session: &sessions::ChatSession, secret: Option<&str>) -> Value {
    let mut body = json!({
        "id": session.id,
        "object": "chatkit.session",
        "expires_at": session.expires_at.timestamp(),
        "workflow": {"id": session.workflow_id, "version_id": session.version_id, "state_variables": session.state_variables},
        "user": session.end_user,
        "status": session.status(),
        "max_requests_per_1_minute": session.max_requests_per_minute,
    });
    if let Some(secret) = secret {
        body["client_secret"] = json!(secret);
    }
    body
}

/// Creates an embedded ChatKit session for one end user and one workflow (call it from
/// your server with an API key or an administrator's token). Give the `client_secret` to
/// the ChatKit client in your page: it sends it as its bearer token to `/api/chatkit`
/// until `expires_at` (10 minutes by default, at most a day).
#[utoipa::path(post, path = "/api/chatkit/sessions", tag = "chatkit", security(("bearer" = [])),
    request_body = CreateSessionRequest,
    responses((status = 201, description = "`{id, object, client_secret, expires_at, workflow, user, status}`"),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_session(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<CreateSessionRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (workflow_id, version, state_variables) = match (req.workflow, req.workflow_id) {
        (Some(w), _) => (
            w.id,
            w.version.or(req.version),
            w.state_variables.or(req.state_variables),
        ),
        (None, Some(id)) => (id, req.version, req.state_variables),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "name the workflow: `workflow: {id}` or `workflow_id`",
            ));
        }
    };
    if req
        .expires_after
        .as_ref()
        .and_then(|e| e.anchor.as_deref())
        .is_some_and(|a| a != "created_at")
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`expires_after.anchor` is `created_at`",
        ));
    }
    let (session, secret) = sessions::create(
        &state.services,
        &admin,
        sessions::NewSession {
            workflow_id,
            version,
            end_user: req.user,
            state_variables,
            expires_after: req.expires_after.map(|e| Duration::from_secs(e.seconds)),
            max_requests_per_minute: req.rate_limits.map(|r| r.max_requests_per_1_minute),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(session_json(&session, Some(&secret))),
    ))
}

/// Ends a session at once; its secret stops working.
#[utoipa::path(post, path = "/api/chatkit/sessions/{id}/cancel", tag = "chatkit", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The session, cancelled"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn cancel_session(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<Value>> {
    let session = sessions::cancel(&state.services, &admin, &id).await?;
    Ok(Json(session_json(&session, None)))
}

/// The workflow a plain ChatKit client talks to (the ChatKit default) and how it starts.
#[utoipa::path(get, path = "/api/chatkit/workflow", tag = "chatkit", security(("bearer" = [])),
    responses((status = 200, description = "`{workflow_id, workflow_slug, workflow_display_name, definition_id, definition_version, auto_start, auto_start_user_message?, auto_start_assistant_message?, updated_at}`"),
        (status = 409, body = ErrorBody)))]
async fn chat_workflow(
    State(state): State<AppState>,
    _user: AuthUser,
) -> ApiResult<Json<appearance::ChatWorkflow>> {
    Ok(Json(appearance::chat_workflow(&state.services).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AppearanceQuery {
    /// Merge this workflow's override over the global settings.
    pub workflow_id: Option<i64>,
}

/// The chat's theme and start screen, as a ChatKit client applies them (public: a page
/// embedding the chat reads it before anyone logs in).
#[utoipa::path(get, path = "/api/appearance-settings", tag = "chatkit", params(AppearanceQuery),
    responses((status = 200, description = "`{color_scheme, radius_style, accent_color, use_custom_surface_colors, surface_hue, surface_tint, surface_shade, heading_font, body_font, start_screen_greeting, start_screen_prompt, start_screen_placeholder, start_screen_disclaimer}`")))]
async fn appearance(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<AppearanceQuery>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::effective(&state.services, query.workflow_id).await?,
    ))
}

/// The global appearance settings as stored (unset fields use the defaults).
#[utoipa::path(get, path = "/api/admin/appearance-settings", tag = "chatkit", security(("bearer" = [])),
    responses((status = 200, description = "The stored settings"), (status = 403, body = ErrorBody)))]
async fn get_global_appearance(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(appearance::global(&state.services, &admin).await?))
}

/// Changes the global appearance settings: the fields sent change, `null` clears one (it
/// inherits the default again), the others stay (a JSON merge patch).
#[utoipa::path(patch, path = "/api/admin/appearance-settings", tag = "chatkit", security(("bearer" = [])),
    request_body(content = Object, description = "Appearance fields to change"),
    responses((status = 200, description = "The stored settings"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_global_appearance(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(patch): AppJson<serde_json::Map<String, Value>>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::set_global(&state.services, &admin, appearance::Change::Merge(patch)).await?,
    ))
}

/// Replaces the global appearance settings; fields left out or null inherit the defaults.
#[utoipa::path(put, path = "/api/admin/appearance-settings", tag = "chatkit", security(("bearer" = [])),
    request_body(content = Object, description = "Appearance fields"),
    responses((status = 200, description = "The stored settings"), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace_global_appearance(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(value): AppJson<appearance::Appearance>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::set_global(
            &state.services,
            &admin,
            appearance::Change::Replace(Box::new(value)),
        )
        .await?,
    ))
}

/// A workflow's appearance override (null fields inherit the global settings).
#[utoipa::path(get, path = "/api/workflows/{id}/appearance", tag = "chatkit", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "The override"), (status = 404, body = ErrorBody)))]
async fn get_workflow_appearance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::workflow_override(&state.services, &user, id).await?,
    ))
}

/// Changes a workflow's appearance override (write access): the fields sent change, `null`
/// clears one (it inherits the global settings again), the others stay.
#[utoipa::path(patch, path = "/api/workflows/{id}/appearance", tag = "chatkit", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Object, description = "Appearance fields to change"),
    responses((status = 200, description = "The override"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_workflow_appearance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(patch): AppJson<serde_json::Map<String, Value>>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::set_workflow_override(
            &state.services,
            &user,
            id,
            appearance::Change::Merge(patch),
        )
        .await?,
    ))
}

/// Replaces a workflow's appearance override (write access); fields left out inherit.
#[utoipa::path(put, path = "/api/workflows/{id}/appearance", tag = "chatkit", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body(content = Object, description = "Appearance fields"),
    responses((status = 200, description = "The override"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace_workflow_appearance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(value): AppJson<appearance::Appearance>,
) -> ApiResult<Json<appearance::Appearance>> {
    Ok(Json(
        appearance::set_workflow_override(
            &state.services,
            &user,
            id,
            appearance::Change::Replace(Box::new(value)),
        )
        .await?,
    ))
}

/// The server's public base URL: the configured one, else the request's own.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.services.chat.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (proto, host) = if state.http.trust_proxy_headers {
        (
            header("x-forwarded-proto"),
            header("x-forwarded-host").or_else(|| header("host")),
        )
    } else {
        (None, header("host"))
    };
    format!(
        "{}://{}",
        proto.unwrap_or_else(|| "http".into()),
        host.unwrap_or_else(|| "localhost".into())
    )
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The attachment's token, from its `upload_descriptor` or `preview_url`.
    pub token: String,
}

/// Receives an attachment's bytes: the `upload_descriptor.url` that `attachments.create`
/// returned (no bearer token needed: the URL carries its own). The body is either
/// `multipart/form-data` with a `file` field or the raw bytes. Answers with the
/// attachment, now without `upload_descriptor`.
#[utoipa::path(post, path = "/api/chatkit/attachments/{id}/upload", tag = "chatkit",
    params(("id" = String, Path), TokenQuery),
    responses((status = 200, description = "The attachment"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<TokenQuery>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    // Nothing is read before the URL's token is checked.
    let declared = attachments::check_upload(&state.services, &id, &query.token)
        .await?
        .size;
    let multipart = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the file is larger than allowed",
        )
    };
    // Raw bytes beyond the declared size are refused before they are read.
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if !multipart && length.is_some_and(|length| length > declared) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than the {declared} bytes declared in `attachments.create`"
            ),
        ));
    }
    let bytes: Vec<u8> = if multipart {
        let mut form = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|err| bad_request(format!("not a multipart body: {err}")))?;
        let mut file = None;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|err| bad_request(format!("the multipart body is malformed: {err}")))?
        {
            if field.name() == Some("file") {
                file = Some(field.bytes().await.map_err(|_| too_large())?.to_vec());
                break;
            }
        }
        file.ok_or_else(|| bad_request("the multipart body has no `file` field"))?
    } else {
        Bytes::from_request(request, &state)
            .await
            .map_err(|_| too_large())?
            .to_vec()
    };
    let attachment = attachments::upload(&state.services, &id, &query.token, &bytes).await?;
    let token = attachments::url_token(&state.services, &attachment.id);
    Ok(Json(
        attachment.to_wire(&base_url(&state, &headers), &token),
    ))
}

/// An attachment's bytes (an image's `preview_url`).
#[utoipa::path(get, path = "/api/chatkit/attachments/{id}/content", tag = "chatkit",
    params(("id" = String, Path), TokenQuery),
    responses((status = 200, description = "The file"), (status = 404, body = ErrorBody)))]
async fn content(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<TokenQuery>,
) -> ApiResult<Response> {
    let (mime_type, bytes) = attachments::content(&state.services, &id, &query.token).await?;
    let mime = HeaderValue::from_str(&mime_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut response = (
        [
            (axum::http::header::CONTENT_TYPE, mime),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response();
    // Only raster images are shown in place; anything else (HTML, SVG, text) downloads,
    // sandboxed, so an upload can never run as a page of this origin.
    if !attachments::shown_inline(&mime_type) {
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
        headers.insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        );
    }
    Ok(response)
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

/// Whether the request says its body is JSON (`application/json` or a `+json` type).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_chatkit_request", message)
}

/// Who calls the ChatKit endpoint: a user (access token or API key), or the end user of
/// an embedded session (its `client_secret`).
pub struct ChatUser(pub chat::Principal);

impl axum::extract::FromRequestParts<AppState> for ChatUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if let Some(secret) = token.filter(|t| t.starts_with(sessions::PREFIX)) {
            return match sessions::authenticate(&state.services, secret).await? {
                Ok((user, session)) => Ok(ChatUser(chat::Principal {
                    user,
                    session: Some(session),
                })),
                Err(sessions::Refusal::Unknown) => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the session secret is not valid",
                )),
                Err(sessions::Refusal::Expired) => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "the session expired or was cancelled; ask for a new one",
                )),
                Err(sessions::Refusal::RateLimited { retry_after_secs }) => Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "this session sends too many requests; retry in {retry_after_secs} seconds"
                    ),
                )
                .with_retry_after(retry_after_secs)),
            };
        }
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        Ok(ChatUser(chat::Principal::user(user)))
    }
}

/// The ChatKit endpoint: point a ChatKit client's `api.url` here (with the user's bearer
/// token added by its `fetch`). Streaming requests (`threads.create`,
/// `threads.add_user_message`, `threads.add_client_tool_output`,
/// `threads.retry_after_item`, `threads.custom_action`) answer with `text/event-stream`;
/// the others with JSON. Request `metadata.workflow_id` (or `params.metadata.workflow_id`)
/// on `threads.create` binds the new thread to that workflow instead of the ChatKit
/// default.
#[utoipa::path(post, path = "/api/chatkit", tag = "chatkit", security(("bearer" = [])),
    request_body(content = Object, description = "A ChatKit request: `{type, params, metadata?}`"),
    responses(
        (status = 200, description = "A JSON document (listing and reading requests), or for the streaming ones (`threads.create`, `threads.add_user_message`, `threads.add_client_tool_output`, `threads.add_structured_input`, `threads.retry_after_item`, `threads.custom_action`) a stream of server-sent events (`data: <event>`, with `: ping` comments while idle)",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
async fn chatkit(
    State(state): State<AppState>,
    ChatUser(who): ChatUser,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // A browser's cross-site form or text post cannot reach the endpoint: it takes JSON only.
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a JSON body with `Content-Type: application/json`",
        ));
    }
    let base = base_url(&state, &headers);
    let value: Value = serde_json::from_slice(&body)
        .map_err(|err| bad_request(format!("the body is not JSON: {err}")))?;
    if !value.is_object() {
        return Err(bad_request(
            "a ChatKit request is a JSON object with `type` and `params`",
        ));
    }
    let request: Request = serde_json::from_value(value.clone())
        .map_err(|err| bad_request(format!("not a ChatKit request: {err}")))?;
    let services = &state.services;
    let turn = match request {
        Request::ThreadsCreate { input } => Turn::Create {
            input,
            // The request's metadata, or the params' (where some clients put it).
            workflow_id: value["metadata"]["workflow_id"]
                .as_i64()
                .or_else(|| value["params"]["metadata"]["workflow_id"].as_i64()),
        },
        Request::AddUserMessage { thread_id, input } => Turn::UserMessage { thread_id, input },
        Request::AddClientToolOutput { thread_id, result } => {
            Turn::ClientToolOutput { thread_id, result }
        }
        Request::RetryAfterItem { thread_id, item_id } => Turn::Retry { thread_id, item_id },
        Request::CustomAction {
            thread_id,
            item_id,
            action,
        } => Turn::Action {
            thread_id,
            item_id,
            action,
        },
        Request::AddStructuredInput {
            thread_id,
            item_id,
            input,
        } => Turn::StructuredInput {
            thread_id,
            item_id,
            input,
        },
        Request::SyncCustomAction {
            thread_id,
            item_id,
            action,
        } => {
            // Run the action to the end; the client updates the widget itself.
            let mut events = chat::respond(
                services,
                &who,
                Turn::Action {
                    thread_id,
                    item_id,
                    action,
                },
                &base,
            )
            .await?;
            while events.recv().await.is_some() {}
            return Ok(Json(json!({})).into_response());
        }
        Request::GetById { thread_id } => {
            let (thread, mut items) = chat::get_with_items(services, &who, &thread_id).await?;
            with_urls(services, &base, &mut items);
            return Ok(Json(adapter::thread(&thread, values(items))).into_response());
        }
        Request::ListThreads {
            limit,
            order,
            after,
        } => {
            let page = chat::list_threads(
                services,
                &who,
                &PageRequest {
                    limit: limit.unwrap_or(20),
                    order,
                    after,
                },
            )
            .await?;
            return Ok(Json(Page {
                data: page
                    .data
                    .iter()
                    .map(|t| adapter::thread(t, Page::empty()))
                    .collect(),
                has_more: page.has_more,
                after: page.after,
            })
            .into_response());
        }
        Request::ListItems {
            thread_id,
            limit,
            order,
            after,
        } => {
            let mut page = chat::list_items(
                services,
                &who,
                &thread_id,
                &PageRequest {
                    limit: limit.unwrap_or(20),
                    order,
                    after,
                },
            )
            .await?;
            with_urls(services, &base, &mut page);
            return Ok(Json(page).into_response());
        }
        Request::UpdateThread { thread_id, title } => {
            let thread = chat::rename(services, &who, &thread_id, &title).await?;
            return Ok(Json(adapter::thread(&thread, Page::empty())).into_response());
        }
        Request::DeleteThread { thread_id } => {
            chat::delete(services, &who, &thread_id).await?;
            return Ok(Json(json!({})).into_response());
        }
        Request::Feedback {
            thread_id,
            item_ids,
            kind,
        } => {
            chat::feedback(services, &who, &thread_id, &item_ids, kind).await?;
            return Ok(Json(json!({})).into_response());
        }
        Request::CreateAttachment {
            name,
            size,
            mime_type,
        } => {
            let attachment = attachments::create(services, &who, &name, size, &mime_type).await?;
            let token = attachments::url_token(services, &attachment.id);
            return Ok(Json(attachment.to_wire(&base, &token)).into_response());
        }
        Request::DeleteAttachment { attachment_id } => {
            attachments::delete(services, &who, &attachment_id).await?;
            return Ok(Json(json!({})).into_response());
        }
        Request::Transcribe {
            audio_base64,
            mime_type,
        } => {
            let audio = base64::engine::general_purpose::STANDARD
                .decode(audio_base64.trim())
                .map_err(|_| bad_request("`audio_base64` is not base64"))?;
            let text = models::transcribe(services, audio, &mime_type)
                .await?
                .map_err(|err| ApiError::from_domain(&err))?;
            return Ok(Json(TranscriptionResult { text }).into_response());
        }
    };
    let events = chat::respond(services, &who, turn, &base).await?;
    Ok(event_stream(events))
}

/// How long idle streams wait before a `: ping` comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long an item update (a text delta) waits for more events to share its write.
const COALESCE: Duration = Duration::from_millis(4);
/// The most bytes one write carries.
const CHUNK: usize = 16 * 1024;

/// The turn's events as ChatKit server-sent events. The first write goes out at once with the
/// events already queued (the thread and the user's message: the time to first event);
/// every later one waits up to [`COALESCE`] for company. A streamed answer costs a few
/// writes instead of one per event, and an event reaches the client at most 4 ms later;
/// the last write goes out as soon as the turn ends, with the stream's end.
fn event_stream(events: tokio::sync::mpsc::Receiver<TurnEvent>) -> Response {
    struct Writer {
        adapter: adapter::Adapter,
        mapped: Vec<StreamEvent>,
    }
    impl Writer {
        fn push(&mut self, buf: &mut Vec<u8>, event: TurnEvent) {
            self.adapter.map(event, &mut self.mapped);
            for event in self.mapped.drain(..) {
                buf.extend_from_slice(b"data: ");
                if serde_json::to_writer(&mut *buf, &event).is_err() {
                    buf.extend_from_slice(b"{}");
                }
                buf.extend_from_slice(b"\n\n");
            }
        }
    }
    let writer = Writer {
        adapter: adapter::Adapter::default(),
        mapped: Vec::new(),
    };
    let stream = futures_util::stream::unfold(
        (events, writer, true),
        |(mut events, mut writer, opening)| async move {
            let first = match tokio::time::timeout(KEEP_ALIVE, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(_) => {
                    return Some((
                        Ok::<_, Infallible>(Bytes::from_static(b": ping\n\n")),
                        (events, writer, opening),
                    ));
                }
            };
            let wait = !opening;
            let mut buf = Vec::with_capacity(1024);
            writer.push(&mut buf, first);
            // One timer for the whole window, set only if the window is waited for.
            let mut window: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
            while buf.len() < CHUNK {
                let next = match events.try_recv() {
                    Ok(event) => event,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) if wait => {
                        let timer =
                            window.get_or_insert_with(|| Box::pin(tokio::time::sleep(COALESCE)));
                        tokio::select! {
                            biased;
                            event = events.recv() => match event {
                                Some(event) => event,
                                None => break,
                            },
                            () = timer.as_mut() => break,
                        }
                    }
                    Err(_) => break,
                };
                writer.push(&mut buf, next);
            }
            Some((Ok(Bytes::from(buf)), (events, writer, false)))
        },
    );
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Gives the items' attachments their links (stored items keep no URL tokens).
fn with_urls(services: &domain::Services, base: &str, page: &mut Page<ThreadItem>) {
    for item in &mut page.data {
        attachments::with_urls(services, base, item);
    }
}

fn values(page: Page<ThreadItem>) -> Page<Value> {
    Page {
        data: page
            .data
            .into_iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .collect(),
        has_more: page.has_more,
        after: page.after,
    }
}
