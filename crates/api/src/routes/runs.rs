//! `/api/workflows/{id}/runs` and `/api/runs`: start, inspect, resume and cancel runs.

use std::convert::Infallible;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use chrono::{DateTime, Utc};
use domain::runs::{
    self, Event, Resume, Run, RunFilter, RunStatus, StartRun, Step, follow::Follower,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AppJson, AppPath, AppQuery, AuthUser, instant},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(steps))
        .routes(routes!(events))
        .routes(routes!(resume))
        .routes(routes!(cancel))
}

/// A run: where it is, its state, and what it produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunResponse {
    pub id: String,
    pub workflow_id: i64,
    pub version_id: i64,
    pub user_id: Option<i64>,
    /// The conversation the run belongs to, if any.
    pub thread_id: Option<String>,
    /// `running`, `waiting`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub current_node: Option<String>,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub state: Value,
    /// The final output, once completed.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// What a waiting run waits for: `{kind: user_message|approval, node, prompt}`.
    #[schema(value_type = Option<Object>)]
    pub wait: Option<Value>,
    /// Why a failed run failed: `{node, code, message}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// The conversation so far: `[{role, text}]`.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
    pub step_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Run> for RunResponse {
    fn from(run: Run) -> Self {
        RunResponse {
            id: run.id,
            workflow_id: run.workflow_id,
            version_id: run.version_id,
            user_id: run.user_id,
            thread_id: run.thread_id,
            status: run.status.as_str().into(),
            current_node: run.current_node,
            input: run.input,
            state: run.state,
            output: run.output,
            wait: run
                .wait
                .map(|w| serde_json::to_value(w).expect("waits serialise")),
            error: run
                .error
                .map(|e| serde_json::to_value(e).expect("failures serialise")),
            messages: run
                .history
                .into_iter()
                .map(|h| serde_json::json!({"role": h.role, "text": h.text}))
                .collect(),
            step_count: run.step_count,
            created_at: run.created_at,
            updated_at: run.updated_at,
            finished_at: run.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepResponse {
    pub seq: i64,
    pub node: String,
    pub kind: String,
    /// `ok`, `waiting` or `failed`.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub output: Value,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

impl From<Step> for StepResponse {
    fn from(s: Step) -> Self {
        StepResponse {
            seq: s.seq,
            node: s.node,
            kind: s.kind,
            status: s.status,
            input: s.input,
            output: s.output,
            error: s.error,
            started_at: s.started_at,
            duration_ms: s.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventResponse {
    pub seq: i64,
    /// `run.started`, `node.finished`, `assistant_message`, `run.waiting`, `usage`, `run.completed`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub node: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub at: DateTime<Utc>,
}

impl From<Event> for EventResponse {
    fn from(e: Event) -> Self {
        EventResponse {
            seq: e.seq,
            kind: e.kind.as_str().to_string(),
            node: e.node,
            data: e.data,
            at: e.at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRunRequest {
    /// The run's input; a string becomes `{"input_as_text": ...}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Value,
    /// Values over the state schema's defaults.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub state: Option<Value>,
    /// Run a draft or an older version (write access); production by default.
    #[serde(default)]
    pub version_id: Option<i64>,
    /// The conversation the run belongs to. A thread has at most one unfinished run: a
    /// second start on it is refused with 409 until that run finishes or is cancelled.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The model the user chose, for agents that offer a choice (`user_model_options`,
    /// or `model_selection_mode: "user"`); other agents ignore it.
    #[serde(default)]
    pub model: Option<String>,
    /// Answer with a stream of the run's events (server-sent events) instead of waiting for it.
    #[serde(default)]
    pub stream: bool,
}

/// One answer to what the run waits for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// For a run waiting for the user's message.
    #[serde(default)]
    pub user_message: Option<String>,
    /// For a run waiting for approval: `approve` or `reject`.
    #[serde(default)]
    pub approval: Option<String>,
    /// For a run waiting on a widget: `{type, payload?, values?}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub widget_action: Option<Value>,
    /// For a run waiting for a client tool: the tool's result (any JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub client_tool_output: Option<Value>,
    /// For a run waiting for answers to its questions: `{status?, answers: {id: {values,
    /// skipped?}}}` (ChatKit's structured input submission).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub structured_input: Option<Value>,
    /// Answer with a stream of the run's events from here on instead of waiting.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub workflow_id: Option<i64>,
    /// `running`, `waiting`, `completed`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// Started at or after this time (RFC 3339, or a date: midnight UTC).
    pub from: Option<String>,
    /// Started before this time (RFC 3339, or a date: midnight UTC).
    pub to: Option<String>,
    /// Only the runs of this conversation thread.
    pub thread_id: Option<String>,
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this sequence number.
    pub after: Option<i64>,
    /// Streams only: `stopped` (the default) ends the stream when the run stops running
    /// (it waits or finishes); `finished` follows it through its waits until it
    /// completes, fails or is cancelled. An open stream costs no database reads while the
    /// run is quiet: it wakes when the run is saved, on any replica.
    pub until: Option<String>,
}

/// Runs a workflow (its production version unless `version_id` is given) until it ends
/// or waits for the user, and returns the run.
#[utoipa::path(post, path = "/api/workflows/{id}/runs", tag = "runs", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = StartRunRequest,
    responses(
        (status = 201, body = RunResponse),
        (status = 200, description = "With `stream: true`: the run's events as server-sent events; the run's id is in the `X-Run-Id` header, its address in `Location` and its `run.started` event",
            content_type = "text/event-stream", body = String,
            headers(("X-Run-Id" = String, description = "The run's id"), ("Location" = String, description = "The run's address"))),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The workflow has no published version", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn start(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<StartRunRequest>,
) -> ApiResult<Response> {
    let start = StartRun {
        workflow_id: id,
        version_id: req.version_id,
        input: req.input,
        state: req.state,
        thread_id: req.thread_id,
        model: req.model,
        history: Vec::new(),
        history_before: None,
        served: false,
    };
    if req.stream {
        let (run, subscription) = runs::start_detached(&state.services, &user, start).await?;
        return Ok(streamed(state, run.id, 0, subscription));
    }
    let run = runs::start(&state.services, &user, start).await?;
    Ok((StatusCode::CREATED, Json(RunResponse::from(run))).into_response())
}

/// A run started or resumed as a stream: its events, with the run's id in `X-Run-Id` and
/// its address in `Location`, so the client can resume or cancel it.
fn streamed(
    state: AppState,
    run_id: String,
    after: i64,
    subscription: runs::live::Subscription,
) -> Response {
    let headers = [
        (
            axum::http::header::HeaderName::from_static("x-run-id"),
            run_id.clone(),
        ),
        (axum::http::header::LOCATION, format!("/api/runs/{run_id}")),
    ];
    (
        headers,
        event_stream(state, run_id, after, Some(subscription)),
    )
        .into_response()
}

/// The run's events after `after` as server-sent events (`id:` is the sequence number),
/// then live ones until the run stops running (`runs::follow`). While the run advances in
/// this process the stream carries the text deltas that are never saved (no `id:`).
fn event_stream(
    state: AppState,
    run_id: String,
    after: i64,
    subscription: Option<runs::live::Subscription>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    sse(Follower::new(&state.services, &run_id, after, subscription))
}

/// A follower's events as server-sent events.
fn sse(follower: Follower) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        let payload = serde_json::json!({"type": event.kind.as_str(), "node": event.node, "data": event.data, "at": event.at});
        let mut sse = SseEvent::default().data(payload.to_string());
        if event.seq > 0 {
            sse = sse.id(event.seq.to_string());
        }
        Some((Ok(sse), follower))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The caller's runs (administrators: all runs), newest first.
#[utoipa::path(get, path = "/api/runs", tag = "runs", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Vec<RunResponse>), (status = 400, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppQuery(query): AppQuery<ListQuery>,
) -> ApiResult<Json<Vec<RunResponse>>> {
    let status = query
        .status
        .map(|s| {
            RunStatus::parse(&s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "unknown run status",
                )
            })
        })
        .transpose()?;
    let filter = RunFilter {
        workflow_id: query.workflow_id,
        status,
        user_id: None,
        from: query
            .from
            .as_deref()
            .map(|t| instant(t, "from"))
            .transpose()?,
        to: query.to.as_deref().map(|t| instant(t, "to")).transpose()?,
        thread_id: query.thread_id,
        limit: query.limit.unwrap_or(50),
    };
    let list = runs::list(&state.services, &user, filter).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RunResponse), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<RunResponse>> {
    Ok(Json(runs::get(&state.services, &user, &id).await?.into()))
}

/// Every executed node, with its input, output, timing and error.
#[utoipa::path(get, path = "/api/runs/{id}/steps", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<StepResponse>), (status = 404, body = ErrorBody)))]
async fn steps(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<Vec<StepResponse>>> {
    let list = runs::steps(&state.services, &user, &id).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// The run's event log, from a sequence number on. With `Accept: text/event-stream`, a
/// stream of server-sent events that follows the run live until it stops running; a
/// client that reconnects with `Last-Event-ID` continues where it left off.
#[utoipa::path(get, path = "/api/runs/{id}/events", tag = "runs", security(("bearer" = [])),
    params(
        ("id" = String, Path),
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "A reconnecting stream's last sequence number: events after it follow (instead of `after`)"),
    ),
    responses(
        (status = 200, description = "The events after `after`: a JSON list, or with `Accept: text/event-stream` server-sent events (`id:` is the sequence number, `event:` the kind, `data:` the event) until the run stops",
            content((Vec<EventResponse> = "application/json"), (String = "text/event-stream"))),
        (status = 404, body = ErrorBody),
    ))]
async fn events(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_event_id.or(query.after).unwrap_or(0);
    let through_waits = match query.until.as_deref() {
        None | Some("stopped") => false,
        Some("finished") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "until is `stopped` or `finished`",
            ));
        }
    };
    if streaming {
        runs::get(&state.services, &user, &id).await?;
        let mut follower = Follower::new(&state.services, &id, after, None);
        if through_waits {
            follower = follower.through_waits();
        }
        return Ok(sse(follower).into_response());
    }
    let list = runs::events(&state.services, &user, &id, after).await?;
    Ok(Json(
        list.into_iter()
            .map(EventResponse::from)
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// Resumes a waiting run with what it waits for: the user's message, an approval, a
/// widget action or a client tool's result.
#[utoipa::path(post, path = "/api/runs/{id}/resume", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ResumeRequest,
    responses(
        (status = 200, body = RunResponse),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The run is not waiting", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn resume(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<ResumeRequest>,
) -> ApiResult<Response> {
    let answer = match (
        req.user_message,
        req.approval.as_deref(),
        req.widget_action,
        req.client_tool_output,
        req.structured_input,
    ) {
        (Some(text), None, None, None, None) => Resume::UserMessage(text),
        (None, Some("approve"), None, None, None) => Resume::Approval(true),
        (None, Some("reject"), None, None, None) => Resume::Approval(false),
        (None, None, Some(action), None, None) => Resume::WidgetAction(action),
        (None, None, None, Some(output), None) => Resume::ClientToolOutput(output),
        (None, None, None, None, Some(answers)) => Resume::StructuredInput(answers),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "give exactly one of `user_message`, `approval` (`approve` or `reject`), `widget_action`, `client_tool_output` or `structured_input`",
            ));
        }
    };
    if req.stream {
        let (run, after, subscription) =
            runs::resume_detached(&state.services, &user, &id, answer).await?;
        return Ok(streamed(state, run.id, after, subscription));
    }
    Ok(Json(RunResponse::from(
        runs::resume(&state.services, &user, &id, answer).await?,
    ))
    .into_response())
}

#[utoipa::path(post, path = "/api/runs/{id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RunResponse), (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<RunResponse>> {
    Ok(Json(
        runs::cancel(&state.services, &user, &id).await?.into(),
    ))
}
