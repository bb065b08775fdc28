//! `HousekeepingStore` on both backends: what is stored, and the batched deletes of
//! retention and of the bulk cleanups. Each delete picks at most `limit` rows through an
//! index (see `plans.rs`) and removes them in one short statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    storage::{CleanupStats, StorageStats},
    store::{HousekeepingStore, StoreResult},
};

use crate::{Backend, Db, store_error, stored_time, with_pool, with_writer};

/// Threads last active before `$1`: `chat_threads_updated_idx`.
pub(crate) const IDLE_THREADS: &str = "DELETE FROM chat_threads WHERE id IN
    (SELECT id FROM chat_threads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2)";

/// Runs finished before `$1`: the partial index `runs_finished_idx`.
pub(crate) const FINISHED_RUNS: &str = "DELETE FROM runs WHERE id IN
    (SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1
       AND status IN ('completed', 'failed', 'cancelled') ORDER BY finished_at LIMIT $2)";

/// Usage records before `$1`: `usage_records_at_idx`.
pub(crate) const OLD_USAGE: &str = "DELETE FROM usage_records WHERE id IN
    (SELECT id FROM usage_records WHERE at < $1 ORDER BY at LIMIT $2)";

/// Uploads no thread holds, made before `$1`: the partial index
/// `chat_attachments_loose_idx`.
pub(crate) const LOOSE_UPLOADS: &str = "SELECT id FROM chat_attachments
    WHERE thread_id IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2";

/// Every blob key a record names, in key order: not a hot path (an administrator's
/// move between backends), read in pages.
pub(crate) const BLOB_KEYS: &str = "SELECT key FROM (
      SELECT id AS key FROM chat_attachments WHERE uploaded
      UNION ALL
      SELECT 'knowledge-' || CAST(store_id AS TEXT) || '-' || CAST(id AS TEXT) AS key
        FROM vector_documents WHERE source = 'file'
    ) keys WHERE key > $1 ORDER BY key LIMIT $2";

/// Versions neither in production nor their workflow's latest, that no unfinished run
/// uses (`runs_version_idx`).
pub(crate) const OLD_VERSIONS: &str = "DELETE FROM workflow_versions WHERE id IN
    (SELECT v.id FROM workflow_versions v
      WHERE NOT v.is_production
        AND v.number < (SELECT MAX(l.number) FROM workflow_versions l WHERE l.workflow_id = v.workflow_id)
        AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.version_id = v.id AND r.status IN ('running', 'waiting'))
        AND NOT EXISTS (SELECT 1 FROM chat_sessions s WHERE s.version_id = v.id)
      LIMIT $1)";

/// Workflows but the ChatKit default.
pub(crate) const OTHER_WORKFLOWS: &str = "DELETE FROM workflows WHERE id IN
    (SELECT id FROM workflows WHERE NOT is_chatkit_default LIMIT $1)";

async fn count(db: &Db, sql: &'static str) -> StoreResult<i64> {
    with_pool!(db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await)
        .map_err(store_error)
}

async fn delete(
    db: &Db,
    sql: &'static str,
    before: Option<DateTime<Utc>>,
    limit: i64,
) -> StoreResult<u64> {
    with_writer!(db, pool => {
        let query = sqlx::query(sql);
        let query = match before {
            Some(before) => query.bind(stored_time(before)),
            None => query,
        };
        query.bind(limit).execute(pool).await.map(|r| r.rows_affected())
    })
    .map_err(store_error)
}

#[async_trait]
impl HousekeepingStore for Db {
    async fn storage_stats(&self) -> StoreResult<StorageStats> {
        let database_bytes = match self.backend {
            Backend::Sqlite => {
                count(
                    self,
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .await?
            }
            Backend::Postgres => count(self, "SELECT pg_database_size(current_database())").await?,
        };
        Ok(StorageStats {
            threads: count(self, "SELECT COUNT(*) FROM chat_threads").await?,
            thread_items: count(self, "SELECT COUNT(*) FROM chat_items").await?,
            attachments: count(self, "SELECT COUNT(*) FROM chat_attachments").await?,
            attachment_bytes: count(
                self,
                "SELECT CAST(COALESCE((SELECT SUM(size) FROM chat_attachments), 0)
                      + COALESCE((SELECT SUM(size) FROM vector_documents), 0) AS BIGINT)",
            )
            .await?,
            runs: count(self, "SELECT COUNT(*) FROM runs").await?,
            unfinished_runs: count(
                self,
                "SELECT COUNT(*) FROM runs WHERE status IN ('running', 'waiting')",
            )
            .await?,
            run_events: count(self, "SELECT COUNT(*) FROM run_events").await?,
            run_steps: count(self, "SELECT COUNT(*) FROM run_steps").await?,
            usage_records: count(self, "SELECT COUNT(*) FROM usage_records").await?,
            workflows: count(self, "SELECT COUNT(*) FROM workflows").await?,
            workflow_versions: count(self, "SELECT COUNT(*) FROM workflow_versions").await?,
            knowledge_documents: count(self, "SELECT COUNT(*) FROM vector_documents").await?,
            knowledge_chunks: count(self, "SELECT COUNT(*) FROM vector_chunks").await?,
            knowledge_jobs: count(self, "SELECT COUNT(*) FROM knowledge_jobs").await?,
            database_bytes,
        })
    }

    async fn cleanup_stats(&self) -> StoreResult<CleanupStats> {
        Ok(CleanupStats {
            conversations: count(self, "SELECT COUNT(*) FROM chat_threads").await?,
            conversation_items: count(self, "SELECT COUNT(*) FROM chat_items").await?,
            workflow_history: count(
                self,
                "SELECT COUNT(*) FROM workflow_versions v WHERE NOT v.is_production
                   AND v.number < (SELECT MAX(l.number) FROM workflow_versions l WHERE l.workflow_id = v.workflow_id)",
            )
            .await?,
            workflows: count(self, "SELECT COUNT(*) FROM workflows WHERE NOT is_chatkit_default").await?,
        })
    }

    async fn delete_threads_idle_since(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        delete(self, IDLE_THREADS, Some(before), limit).await
    }

    async fn delete_runs_finished_before(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64> {
        delete(self, FINISHED_RUNS, Some(before), limit).await
    }

    async fn delete_usage_before(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
        delete(self, OLD_USAGE, Some(before), limit).await
    }

    async fn unreferenced_attachments(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        with_pool!(self, pool => {
            sqlx::query_scalar(LOOSE_UPLOADS)
                .bind(stored_time(before))
                .bind(limit)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)
    }

    async fn delete_old_versions(&self, limit: i64) -> StoreResult<u64> {
        delete(self, OLD_VERSIONS, None, limit).await
    }

    async fn delete_workflows_but_default(&self, limit: i64) -> StoreResult<u64> {
        delete(self, OTHER_WORKFLOWS, None, limit).await
    }

    async fn blob_keys(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<String>> {
        with_pool!(self, pool => {
            sqlx::query_scalar(BLOB_KEYS)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)
    }
}
