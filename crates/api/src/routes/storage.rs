//! `/api/admin/storage` and `/api/admin/cleanup`: what is stored, where uploaded bytes
//! live, how long it is kept, and the seed system's confirmed bulk deletes.

use axum::{Json, extract::State};
use domain::{
    blobs::{self, BlobBackend, BlobSettings, BlobSettingsInput, Moved, S3Input},
    secret::Secret,
    storage::{self, Cleanup, CleanupStats, Deleted, Retention, StorageStats},
};
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
        .routes(routes!(get_blobs, put_blobs))
        .routes(routes!(move_blobs))
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

/// Where uploaded bytes (chat attachments, knowledge files) are kept.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BlobBackendBody {
    /// Files under the data folder (`<data_dir>/attachments`): one machine, or a shared mount.
    Local,
    /// The database every replica shares (no object store needed).
    Database,
    /// An S3-compatible object store (AWS S3, MinIO, R2, Ceph…).
    S3,
}

impl From<BlobBackend> for BlobBackendBody {
    fn from(b: BlobBackend) -> BlobBackendBody {
        match b {
            BlobBackend::Local => BlobBackendBody::Local,
            BlobBackend::Database => BlobBackendBody::Database,
            BlobBackend::S3 => BlobBackendBody::S3,
        }
    }
}

impl From<BlobBackendBody> for BlobBackend {
    fn from(b: BlobBackendBody) -> BlobBackend {
        match b {
            BlobBackendBody::Local => BlobBackend::Local,
            BlobBackendBody::Database => BlobBackend::Database,
            BlobBackendBody::S3 => BlobBackend::S3,
        }
    }
}

/// An S3-compatible store as stored: the secret key is never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct S3Body {
    pub bucket: String,
    pub region: String,
    /// The store's URL; AWS when null.
    pub endpoint: Option<String>,
    /// Prepended to every object's key.
    pub prefix: Option<String>,
    pub access_key_id: String,
    /// Whether a secret key is stored.
    pub secret_access_key_set: bool,
    /// The bucket in the URL's path rather than its host name.
    pub path_style: bool,
}

/// The blob backend setting.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobSettingsBody {
    pub backend: BlobBackendBody,
    /// The S3-compatible store, when one is set (it is kept when another backend is chosen).
    pub s3: Option<S3Body>,
}

impl From<BlobSettings> for BlobSettingsBody {
    fn from(b: BlobSettings) -> BlobSettingsBody {
        BlobSettingsBody {
            backend: b.backend.into(),
            s3: b.s3.map(|s3| S3Body {
                bucket: s3.bucket,
                region: s3.region,
                endpoint: s3.endpoint,
                prefix: s3.prefix,
                access_key_id: s3.access_key_id,
                secret_access_key_set: s3.secret_access_key_set,
                path_style: s3.path_style,
            }),
        }
    }
}

/// An S3-compatible store to use.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Request {
    pub bucket: String,
    /// `us-east-1` when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// The store's URL (`http://minio.local:9000`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Prepended to every object's key, e.g. `switchyard`.
    #[serde(default)]
    pub prefix: Option<String>,
    pub access_key_id: String,
    /// Required the first time; when absent, the stored one is kept. Stored encrypted.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret_access_key: Option<Secret>,
    /// The bucket in the path; true by default when an endpoint is given.
    #[serde(default)]
    pub path_style: Option<bool>,
}

/// The blob backend to use.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlobSettingsRequest {
    pub backend: BlobBackendBody,
    /// Required for `s3`.
    #[serde(default)]
    pub s3: Option<S3Request>,
}

/// What a move of blobs did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovedBody {
    /// Blobs copied into the current backend and removed from the one they were in.
    pub moved: u64,
    /// Blobs already in the current backend.
    pub in_place: u64,
    /// Records whose bytes no backend holds.
    pub missing: u64,
}

impl From<Moved> for MovedBody {
    fn from(m: Moved) -> MovedBody {
        MovedBody {
            moved: m.moved,
            in_place: m.in_place,
            missing: m.missing,
        }
    }
}

/// Where uploaded bytes are kept: the local folder (the default), the database, or an
/// S3-compatible object store. The secret key is never shown.
#[utoipa::path(get, path = "/api/admin/storage/blobs", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = BlobSettingsBody), (status = 403, body = ErrorBody)))]
async fn get_blobs(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<BlobSettingsBody>> {
    Ok(Json(blobs::settings(&state.services, &admin).await?.into()))
}

/// Chooses where new uploads are kept, for every replica. An S3 store is checked first
/// (a test object is written, read and deleted): settings it refuses are not saved
/// (`blob_store_unreachable`). Uploads made before still read from where they are; see
/// `POST /api/admin/storage/blobs/move` to bring them over.
#[utoipa::path(put, path = "/api/admin/storage/blobs", tag = "settings", security(("bearer" = [])),
    request_body = BlobSettingsRequest,
    responses((status = 200, body = BlobSettingsBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_blobs(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(body): AppJson<BlobSettingsRequest>,
) -> ApiResult<Json<BlobSettingsBody>> {
    let input = BlobSettingsInput {
        backend: body.backend.into(),
        s3: body.s3.map(|s3| S3Input {
            bucket: s3.bucket,
            region: s3.region,
            endpoint: s3.endpoint,
            prefix: s3.prefix,
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key,
            path_style: s3.path_style,
        }),
    };
    Ok(Json(
        blobs::set_settings(&state.services, &admin, input)
            .await?
            .into(),
    ))
}

/// Copies every upload into the current backend and removes it from the others, so
/// replicas on other machines can read uploads made before a change. Safe to repeat.
#[utoipa::path(post, path = "/api/admin/storage/blobs/move", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = MovedBody), (status = 403, body = ErrorBody)))]
async fn move_blobs(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<MovedBody>> {
    Ok(Json(
        blobs::move_blobs(&state.services, &admin).await?.into(),
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
