//! `/api/admin/storage` and `/api/admin/cleanup`: what is stored, how long it is kept,
//! and the seed system's confirmed bulk deletes.

use axum::{Json, extract::State};
use domain::storage::{self, Cleanup, CleanupStats, Deleted, Retention, StorageStats};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{AdminUser, AppJson},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_storage))
        .routes(routes!(get_retention, put_retention))
        .routes(routes!(cleanup_stats))
        .routes(routes!(cleanup_conversations))
        .routes(routes!(cleanup_workflow_history))
        .routes(routes!(cleanup_workflows))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StorageResponse {
    /// Rows of each table and the database's size in bytes.
    #[schema(value_type = Object)]
    pub stored: StorageStats,
    /// How long records are kept (null: forever).
    pub retention: RetentionBody,
}

/// How long each kind of record is kept, in days; null (the default) keeps it forever.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Conversations, by their last user message (their items and feedback go too).
    #[serde(default)]
    pub threads_days: Option<u32>,
    /// Finished runs, by when they finished (their events and steps go too).
    #[serde(default)]
    pub runs_days: Option<u32>,
    /// Usage records.
    #[serde(default)]
    pub usage_days: Option<u32>,
    /// Chat uploads no thread holds.
    #[serde(default)]
    pub unreferenced_uploads_days: Option<u32>,
}

impl From<Retention> for RetentionBody {
    fn from(r: Retention) -> RetentionBody {
        RetentionBody {
            threads_days: r.threads_days,
            runs_days: r.runs_days,
            usage_days: r.usage_days,
            unreferenced_uploads_days: r.unreferenced_uploads_days,
        }
    }
}

impl From<RetentionBody> for Retention {
    fn from(r: RetentionBody) -> Retention {
        Retention {
            threads_days: r.threads_days,
            runs_days: r.runs_days,
            usage_days: r.usage_days,
            unreferenced_uploads_days: r.unreferenced_uploads_days,
        }
    }
}

/// What is stored: rows per table, upload bytes, the database's size, and the retention
/// policy.
#[utoipa::path(get, path = "/api/admin/storage", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = StorageResponse), (status = 403, body = ErrorBody)))]
async fn get_storage(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<StorageResponse>> {
    Ok(Json(StorageResponse {
        stored: storage::stats(&state.services, &admin).await?,
        retention: storage::retention(&state.services, &admin).await?.into(),
    }))
}

/// The retention policy. Off by default: nothing is deleted unless a period is set.
#[utoipa::path(get, path = "/api/admin/storage/retention", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = RetentionBody), (status = 403, body = ErrorBody)))]
async fn get_retention(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<RetentionBody>> {
    Ok(Json(
        storage::retention(&state.services, &admin).await?.into(),
    ))
}

/// Replaces the retention policy. A background job on any replica then deletes, in
/// small batches, what is past it (see `[storage] retention_sweep_secs`).
#[utoipa::path(put, path = "/api/admin/storage/retention", tag = "settings", security(("bearer" = [])),
    request_body = RetentionBody,
    responses((status = 200, body = RetentionBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_retention(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(body): AppJson<RetentionBody>,
) -> ApiResult<Json<RetentionBody>> {
    Ok(Json(
        storage::set_retention(&state.services, &admin, body.into())
            .await?
            .into(),
    ))
}

/// What each bulk delete would remove now.
#[utoipa::path(get, path = "/api/admin/cleanup/stats", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
async fn cleanup_stats(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<CleanupStats>> {
    Ok(Json(storage::cleanup_stats(&state.services, &admin).await?))
}

/// A bulk delete's confirmation: the delete's own name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// `conversations`, `workflow-history` or `workflows`: the name of what is deleted.
    #[serde(default)]
    pub confirm: Option<String>,
}

async fn run_cleanup(
    state: &AppState,
    admin: &domain::Principal,
    what: Cleanup,
    body: Confirm,
) -> ApiResult<Json<Deleted>> {
    Ok(Json(
        storage::cleanup(&state.services, admin, what, body.confirm.as_deref()).await?,
    ))
}

/// Deletes every conversation, with its items, feedback and the uploads no thread holds
/// any more. Send `{"confirm": "conversations"}`.
#[utoipa::path(post, path = "/api/admin/cleanup/conversations", tag = "settings", security(("bearer" = [])),
    request_body = Confirm,
    responses((status = 200, description = "What was deleted", body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn cleanup_conversations(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(body): AppJson<Confirm>,
) -> ApiResult<Json<Deleted>> {
    run_cleanup(&state, &admin, Cleanup::Conversations, body).await
}

/// Deletes every finished run and every workflow version neither in production nor its
/// workflow's latest. Send `{"confirm": "workflow-history"}`.
#[utoipa::path(post, path = "/api/admin/cleanup/workflow-history", tag = "settings", security(("bearer" = [])),
    request_body = Confirm,
    responses((status = 200, description = "What was deleted", body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn cleanup_workflow_history(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(body): AppJson<Confirm>,
) -> ApiResult<Json<Deleted>> {
    run_cleanup(&state, &admin, Cleanup::WorkflowHistory, body).await
}

/// Deletes every workflow but the ChatKit default, with their versions and runs. Send
/// `{"confirm": "workflows"}`.
#[utoipa::path(post, path = "/api/admin/cleanup/workflows", tag = "settings", security(("bearer" = [])),
    request_body = Confirm,
    responses((status = 200, description = "What was deleted", body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn cleanup_workflows(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(body): AppJson<Confirm>,
) -> ApiResult<Json<Deleted>> {
    run_cleanup(&state, &admin, Cleanup::Workflows, body).await
}
