//! `/api/admin/settings` and `/api/admin/usage`: instance settings and usage reports.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use domain::models::{
    titles,
    usage::{self, GroupBy},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppQuery, instant},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, update_settings))
        .routes(routes!(usage_report))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsResponse {
    /// The instructions that turn a first message into a thread title.
    pub thread_title_prompt: String,
    /// Whether new chat threads get a generated title (a model call after the first answer).
    pub thread_titles: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// An empty string restores the default prompt.
    #[serde(default)]
    pub thread_title_prompt: Option<String>,
    #[serde(default)]
    pub thread_titles: Option<bool>,
}

/// Instance settings.
#[utoipa::path(get, path = "/api/admin/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = SettingsResponse), (status = 403, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<SettingsResponse>> {
    let (thread_title_prompt, thread_titles) = titles::settings(&state.services, &admin).await?;
    Ok(Json(SettingsResponse {
        thread_title_prompt,
        thread_titles,
    }))
}

#[utoipa::path(patch, path = "/api/admin/settings", tag = "settings", security(("bearer" = [])),
    request_body = SettingsRequest,
    responses((status = 200, body = SettingsResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_settings(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<SettingsRequest>,
) -> ApiResult<Json<SettingsResponse>> {
    let services = &state.services;
    let (mut thread_title_prompt, mut thread_titles) = titles::settings(services, &admin).await?;
    if let Some(prompt) = req.thread_title_prompt {
        thread_title_prompt = titles::set_prompt(services, &admin, &prompt).await?;
    }
    if let Some(on) = req.thread_titles {
        thread_titles = titles::set_enabled(services, &admin, on).await?;
    }
    Ok(Json(SettingsResponse {
        thread_title_prompt,
        thread_titles,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start, inclusive: RFC 3339 or `YYYY-MM-DD` (UTC). Default: 30 days before `to`.
    pub from: Option<String>,
    /// End, exclusive: RFC 3339 or `YYYY-MM-DD`. Default: now.
    pub to: Option<String>,
    /// `user`, `workflow`, `run`, `model` (default), `provider`, `purpose` or `day`.
    pub group_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageLineResponse {
    pub key: Option<String>,
    pub label: Option<String>,
    pub calls: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    /// US dollars; `null` when no call of the group had a price.
    pub cost_usd: Option<f64>,
    /// Calls whose model had no price: their tokens are counted, their cost is not in
    /// `cost_usd` (give the model prices in the registry).
    pub unpriced_calls: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: String,
    pub lines: Vec<UsageLineResponse>,
}

/// Tokens and cost of model calls in a period, grouped.
#[utoipa::path(get, path = "/api/admin/usage", tag = "settings", security(("bearer" = [])),
    params(UsageQuery),
    responses((status = 200, body = UsageResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn usage_report(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppQuery(query): AppQuery<UsageQuery>,
) -> ApiResult<Json<UsageResponse>> {
    let to = query
        .to
        .as_deref()
        .map(|t| instant(t, "to"))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let from = query
        .from
        .as_deref()
        .map(|t| instant(t, "from"))
        .transpose()?
        .unwrap_or(to - chrono::Duration::days(30));
    let group_name = query.group_by.unwrap_or_else(|| "model".into());
    let group_by = GroupBy::parse(&group_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "group_by must be user, workflow, run, model, provider, purpose or day",
        )
    })?;
    if from >= to {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "`from` must be before `to`",
        ));
    }
    let lines = usage::summary(&state.services, &admin, from, to, group_by).await?;
    Ok(Json(UsageResponse {
        from,
        to,
        group_by: group_name,
        lines: lines
            .into_iter()
            .map(|l| UsageLineResponse {
                key: l.key,
                label: l.label,
                calls: l.calls,
                input_tokens: l.usage.input_tokens,
                output_tokens: l.usage.output_tokens,
                cached_input_tokens: l.usage.cached_input_tokens,
                reasoning_tokens: l.usage.reasoning_tokens,
                cost_usd: l.cost_usd,
                unpriced_calls: l.unpriced_calls,
            })
            .collect(),
    }))
}
