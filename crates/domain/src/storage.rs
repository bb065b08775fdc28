//! What is stored and for how long: the storage overview, retention (off by default:
//! nothing stored is lost unless an administrator asks) swept in bounded batches by a
//! background job on any replica, and the seed system's confirmed bulk deletes.
//!
//! Invariants:
//! - Every delete goes through the store in batches of at most [`BATCH`] rows of its main
//!   table, each its own short transaction, so no lock is held long and any replica may
//!   sweep at the same time as another (a row deleted twice is deleted once).
//! - Runs still running or waiting are never deleted, whatever their age.
//! - An upload's bytes go before its record, so a failed sweep leaves a record to retry,
//!   never bytes that nothing names.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Services,
    auth::{AuthError, Principal},
    error::{DomainError, ErrorKind},
    store::StoreError,
};

/// Rows of a main table deleted per statement.
pub const BATCH: i64 = 500;

/// The setting that holds the retention policy.
pub const RETENTION_SETTING: &str = "storage.retention";

/// How many rows each table holds, and the database's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStats {
    pub threads: i64,
    pub thread_items: i64,
    pub attachments: i64,
    /// Bytes of uploaded attachments and knowledge files as recorded.
    pub attachment_bytes: i64,
    pub runs: i64,
    pub unfinished_runs: i64,
    pub run_events: i64,
    pub run_steps: i64,
    pub usage_records: i64,
    pub workflows: i64,
    pub workflow_versions: i64,
    pub knowledge_documents: i64,
    pub knowledge_chunks: i64,
    pub knowledge_jobs: i64,
    /// The database's size on disk, in bytes.
    pub database_bytes: i64,
}

/// How long each kind of record is kept, in days; `None` keeps it forever (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Conversations, by their last activity (their items and feedback go with them).
    pub threads_days: Option<u32>,
    /// Finished runs, by when they finished (their events and steps go with them).
    pub runs_days: Option<u32>,
    /// Usage records (reports over older periods then show less).
    pub usage_days: Option<u32>,
    /// Chat uploads no message refers to (never sent, or their thread was deleted).
    pub unreferenced_uploads_days: Option<u32>,
}

/// What a sweep or a bulk delete removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub threads: u64,
    pub runs: u64,
    pub usage_records: u64,
    pub uploads: u64,
    pub workflow_versions: u64,
    pub workflows: u64,
}

impl Deleted {
    pub fn total(&self) -> u64 {
        self.threads
            + self.runs
            + self.usage_records
            + self.uploads
            + self.workflow_versions
            + self.workflows
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Invalid(String),
    /// Blob settings whose store could not be reached or refused the probe.
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for StorageError {
    fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Auth(err) => err.kind(),
            StorageError::Invalid(_) | StorageError::Unreachable(_) => ErrorKind::Invalid,
            StorageError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            StorageError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StorageError::Auth(err) => err.code(),
            StorageError::Invalid(_) => "invalid_request",
            StorageError::Unreachable(_) => "blob_store_unreachable",
            StorageError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            StorageError::Store(_) => "internal_error",
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// What is stored (administrators).
pub async fn stats(services: &Services, actor: &Principal) -> StorageResult<StorageStats> {
    actor.admin()?;
    Ok(services.store.storage_stats().await?)
}

/// The retention policy (administrators).
pub async fn retention(services: &Services, actor: &Principal) -> StorageResult<Retention> {
    actor.admin()?;
    Ok(policy(services).await?)
}

async fn policy(services: &Services) -> Result<Retention, StoreError> {
    Ok(services
        .store
        .get_setting(RETENTION_SETTING)
        .await?
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default())
}

/// Sets the retention policy (administrators); each period is at least one day.
pub async fn set_retention(
    services: &Services,
    actor: &Principal,
    retention: Retention,
) -> StorageResult<Retention> {
    actor.admin()?;
    for (name, days) in [
        ("threads_days", retention.threads_days),
        ("runs_days", retention.runs_days),
        ("usage_days", retention.usage_days),
        (
            "unreferenced_uploads_days",
            retention.unreferenced_uploads_days,
        ),
    ] {
        if days.is_some_and(|d| !(1..=36_500).contains(&d)) {
            return Err(StorageError::Invalid(format!(
                "{name} is a number of days from 1 to 36500, or null to keep forever"
            )));
        }
    }
    services
        .store
        .put_setting(RETENTION_SETTING, &json!(retention), Utc::now())
        .await?;
    tracing::info!(by = %actor.user.email, ?retention, "the retention policy changed");
    Ok(retention)
}

fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

/// Deletes, in batches, what is past the retention policy. Any replica may run it.
pub async fn sweep(services: &Services, now: DateTime<Utc>) -> Result<Deleted, StoreError> {
    let policy = policy(services).await?;
    let mut deleted = Deleted::default();
    if let Some(days) = policy.threads_days {
        deleted.threads = batches(|| {
            services
                .store
                .delete_threads_idle_since(cutoff(now, days), BATCH)
        })
        .await?;
    }
    if let Some(days) = policy.runs_days {
        deleted.runs = batches(|| {
            services
                .store
                .delete_runs_finished_before(cutoff(now, days), BATCH)
        })
        .await?;
    }
    if let Some(days) = policy.usage_days {
        deleted.usage_records =
            batches(|| services.store.delete_usage_before(cutoff(now, days), BATCH)).await?;
    }
    if let Some(days) = policy.unreferenced_uploads_days {
        deleted.uploads = delete_uploads(services, Some(cutoff(now, days))).await?;
    }
    if deleted.total() > 0 {
        tracing::info!(
            threads = deleted.threads,
            runs = deleted.runs,
            usage_records = deleted.usage_records,
            uploads = deleted.uploads,
            "retention deleted what was past its time"
        );
    }
    Ok(deleted)
}

/// Runs a batch delete until a batch comes back short; the total deleted.
async fn batches<F, Fut>(mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let done = delete().await?;
        total += done;
        if done < BATCH as u64 {
            return Ok(total);
        }
        // Others' writes go between two batches.
        tokio::task::yield_now().await;
    }
}

/// Deletes chat uploads no message refers to, created before `before` (all of them when
/// `None`): their bytes, then their records.
async fn delete_uploads(
    services: &Services,
    before: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let before = before.unwrap_or_else(Utc::now);
    let mut total = 0;
    loop {
        let ids = services
            .store
            .unreferenced_attachments(before, BATCH)
            .await?;
        for id in &ids {
            crate::chat::attachments::remove(services, id).await?;
        }
        total += ids.len() as u64;
        if (ids.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Storage settings (the `[storage]` table of the configuration).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// How often this replica sweeps what is past the retention policy, in seconds
    /// (each sweep does nothing while the policy keeps everything).
    pub retention_sweep_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            retention_sweep_secs: 600,
        }
    }
}

/// Sweeps every `retention_sweep_secs` until `stopped` turns true; a failed sweep is
/// logged and tried again at the next.
pub async fn retention_worker(
    services: Services,
    settings: StorageSettings,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let every = Duration::from_secs(settings.retention_sweep_secs.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        if let Err(err) = sweep(&services, Utc::now()).await {
            tracing::warn!(error = %err, "the retention sweep failed; it runs again later");
        }
    }
}

/// What the bulk deletes would remove now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CleanupStats {
    /// Conversations and their items.
    pub conversations: i64,
    pub conversation_items: i64,
    /// Workflow versions that are neither in production nor their workflow's latest.
    pub workflow_history: i64,
    /// Workflows other than the ChatKit default (with their versions and runs).
    pub workflows: i64,
}

/// A bulk delete (the seed system's cleanup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Every conversation, with its items, feedback and uploads.
    Conversations,
    /// Every finished run and every workflow version that is neither in production nor
    /// its workflow's latest.
    WorkflowHistory,
    /// Every workflow but the ChatKit default, with its versions and runs.
    Workflows,
}

impl Cleanup {
    pub fn name(self) -> &'static str {
        match self {
            Cleanup::Conversations => "conversations",
            Cleanup::WorkflowHistory => "workflow-history",
            Cleanup::Workflows => "workflows",
        }
    }
}

/// What the bulk deletes would remove (administrators).
pub async fn cleanup_stats(services: &Services, actor: &Principal) -> StorageResult<CleanupStats> {
    actor.admin()?;
    Ok(services.store.cleanup_stats().await?)
}

/// A bulk delete (administrators), confirmed by naming it: `confirm` must be its name.
pub async fn cleanup(
    services: &Services,
    actor: &Principal,
    what: Cleanup,
    confirm: Option<&str>,
) -> StorageResult<Deleted> {
    actor.admin()?;
    if confirm != Some(what.name()) {
        return Err(StorageError::Invalid(format!(
            "this deletes for good; send {{\"confirm\": \"{}\"}} to confirm",
            what.name()
        )));
    }
    let store = &services.store;
    let mut deleted = Deleted::default();
    let far = Utc::now() + chrono::Duration::days(1);
    match what {
        Cleanup::Conversations => {
            deleted.threads = batches(|| store.delete_threads_idle_since(far, BATCH)).await?;
            deleted.uploads = delete_uploads(services, None).await?;
        }
        Cleanup::WorkflowHistory => {
            deleted.runs = batches(|| store.delete_runs_finished_before(far, BATCH)).await?;
            deleted.workflow_versions = batches(|| store.delete_old_versions(BATCH)).await?;
        }
        Cleanup::Workflows => {
            deleted.workflows = batches(|| store.delete_workflows_but_default(BATCH)).await?;
        }
    }
    tracing::warn!(by = %actor.user.email, what = what.name(), deleted = deleted.total(), "an administrator's bulk delete");
    Ok(deleted)
}
