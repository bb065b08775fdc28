//! `WorkflowStore` on both backends: workflows, versions (one JSON graph each) and shares.
//!
//! Concurrency: publishing and version numbering run in transactions that first update
//! the workflow's row, which locks it on PostgreSQL and takes the write lock on SQLite, so
//! two publishes of one workflow are serialised. Unique indexes back every invariant.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    store::{
        DraftEdit, DraftUpdate, ListedWorkflow, NewVersion, NewWorkflow, StoreError, StoreResult,
        WorkflowPatch, WorkflowStore,
    },
    workflows::{Graph, Permission, Share, Version, Workflow},
};
use sqlx::types::Json;

use crate::{
    Backend, Db,
    cache::{Caches, WorkflowKey},
    store_error, stored_time, with_pool, with_writer,
};

macro_rules! workflow_columns {
    () => {
        "w.id, w.slug, w.display_name, w.description, w.owner_id, w.is_chatkit_default, w.follow_production,
         w.created_at, w.updated_at,
         (SELECT v.id FROM workflow_versions v WHERE v.workflow_id = w.id AND v.is_production) AS production_version_id"
    };
}

macro_rules! version_columns {
    () => {
        "id, workflow_id, number, name, graph, revision, is_production, published_at, published_by,
         created_by, created_at, updated_by, updated_at"
    };
}

/// Serialises ChatKit-default changes on PostgreSQL.
const PG_CHATKIT_DEFAULT_LOCK: i64 = 0x5357_5944_434b_4446;

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: i64,
    slug: String,
    display_name: String,
    description: Option<String>,
    owner_id: Option<i64>,
    is_chatkit_default: bool,
    follow_production: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    production_version_id: Option<i64>,
}

impl From<WorkflowRow> for Workflow {
    fn from(row: WorkflowRow) -> Workflow {
        Workflow {
            id: row.id,
            slug: row.slug,
            display_name: row.display_name,
            description: row.description,
            owner_id: row.owner_id,
            is_chatkit_default: row.is_chatkit_default,
            follow_production: row.follow_production,
            production_version_id: row.production_version_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    workflow: WorkflowRow,
    permission: Option<String>,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    workflow_id: i64,
    number: i64,
    name: Option<String>,
    graph: Json<Graph>,
    revision: i64,
    is_production: bool,
    published_at: Option<DateTime<Utc>>,
    published_by: Option<i64>,
    created_by: Option<i64>,
    created_at: DateTime<Utc>,
    updated_by: Option<i64>,
    updated_at: DateTime<Utc>,
}

impl From<VersionRow> for Version {
    fn from(row: VersionRow) -> Version {
        Version {
            id: row.id,
            workflow_id: row.workflow_id,
            number: row.number,
            name: row.name,
            graph: row.graph.0,
            revision: row.revision,
            is_production: row.is_production,
            published_at: row.published_at,
            published_by: row.published_by,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ShareRow {
    user_id: i64,
    email: String,
    permission: String,
    created_at: DateTime<Utc>,
}

const INSERT_VERSION: &str = concat!(
    "INSERT INTO workflow_versions (workflow_id, number, name, graph, revision, is_production, published_at, published_by,
                                    created_by, created_at, updated_by, updated_at)
     SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, 1, $4, $5, $6, $7, $8, $7, $8
     FROM workflow_versions WHERE workflow_id = $1
     RETURNING ",
    version_columns!()
);

#[async_trait]
impl WorkflowStore for Db {
    async fn insert_workflow(
        &self,
        workflow: &NewWorkflow,
        version: &NewVersion,
        publish: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<(Workflow, Version)> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let now = stored_time(now);
        let published_at = publish.then_some(now);
        let published_by = if publish { version.created_by } else { None };
        let (workflow_id, version_row) = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO workflows (slug, display_name, description, owner_id, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                )
                .bind(&workflow.slug)
                .bind(&workflow.display_name)
                .bind(&workflow.description)
                .bind(workflow.owner_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let row: VersionRow = sqlx::query_as(INSERT_VERSION)
                    .bind(id)
                    .bind(&version.name)
                    .bind(Json(&version.graph))
                    .bind(publish)
                    .bind(published_at)
                    .bind(published_by)
                    .bind(version.created_by)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>((id, row))
            }
            .await
        })
        .map_err(store_error)?;
        let created = self
            .workflow_by_id(workflow_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((created, version_row.into()))
    }

    async fn workflow_by_id(&self, id: i64) -> StoreResult<Option<Workflow>> {
        self.caches
            .workflows
            .get_or(WorkflowKey::Id(id), async {
                let sql = concat!(
                    "SELECT ",
                    workflow_columns!(),
                    " FROM workflows w WHERE w.id = $1"
                );
                let row: Option<WorkflowRow> = with_pool!(self, pool => {
                    sqlx::query_as(sql).bind(id).fetch_optional(pool).await
                })
                .map_err(store_error)?;
                Ok(row.map(Workflow::from))
            })
            .await
    }

    async fn workflow_by_slug(&self, slug: &str) -> StoreResult<Option<Workflow>> {
        let sql = concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows w WHERE w.slug = $1"
        );
        let row: Option<WorkflowRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(slug).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        Ok(row.map(Workflow::from))
    }

    async fn list_workflows(&self, visible_to: Option<i64>) -> StoreResult<Vec<ListedWorkflow>> {
        let sql = concat!(
            "SELECT ",
            workflow_columns!(),
            ", s.permission FROM workflows w
             LEFT JOIN workflow_shares s ON s.workflow_id = w.id AND s.user_id = $1
             WHERE $1 IS NULL OR w.owner_id = $1 OR s.user_id IS NOT NULL
             ORDER BY LOWER(w.display_name), w.id"
        );
        let rows: Vec<ListedRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(visible_to).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.workflow.into(),
                    row.permission.as_deref().and_then(Permission::parse),
                )
            })
            .collect())
    }

    async fn count_workflows(&self) -> StoreResult<i64> {
        let (count,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM workflows").fetch_one(pool).await
        })
        .map_err(store_error)?;
        Ok(count)
    }

    async fn update_workflow(
        &self,
        id: i64,
        patch: &WorkflowPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Workflow>> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let (set_description, description) = match &patch.description {
            Some(description) => (true, description.clone()),
            None => (false, None),
        };
        let n_updated = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE workflows SET
                    slug = COALESCE($2, slug),
                    display_name = COALESCE($3, display_name),
                    description = CASE WHEN $4 THEN $5 ELSE description END,
                    follow_production = COALESCE($6, follow_production),
                    updated_at = $7
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&patch.slug)
            .bind(&patch.display_name)
            .bind(set_description)
            .bind(description)
            .bind(patch.follow_production)
            .bind(stored_time(now))
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(store_error)?;
        if n_updated == 0 {
            return Ok(None);
        }
        self.workflow_by_id(id).await
    }

    async fn delete_workflow(&self, id: i64) -> StoreResult<bool> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let n_deleted = with_writer!(self, pool => {
            sqlx::query("DELETE FROM workflows WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(store_error)?;
        Ok(n_deleted == 1)
    }

    async fn share_of(&self, workflow_id: i64, user_id: i64) -> StoreResult<Option<Permission>> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT permission FROM workflow_shares WHERE workflow_id = $1 AND user_id = $2")
                .bind(workflow_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.and_then(|(p,)| Permission::parse(&p)))
    }

    async fn list_shares(&self, workflow_id: i64) -> StoreResult<Vec<Share>> {
        let rows: Vec<ShareRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT s.user_id, u.email, s.permission, s.created_at
                 FROM workflow_shares s JOIN users u ON u.id = s.user_id
                 WHERE s.workflow_id = $1 ORDER BY u.email",
            )
            .bind(workflow_id)
            .fetch_all(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(Share {
                    user_id: row.user_id,
                    email: row.email,
                    permission: Permission::parse(&row.permission)?,
                    created_at: row.created_at,
                })
            })
            .collect())
    }

    async fn put_share(
        &self,
        workflow_id: i64,
        user_id: i64,
        permission: Permission,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO workflow_shares (workflow_id, user_id, permission, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workflow_id, user_id) DO UPDATE SET permission = excluded.permission",
            )
            .bind(workflow_id)
            .bind(user_id)
            .bind(permission.as_str())
            .bind(stored_time(now))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn delete_share(&self, workflow_id: i64, user_id: i64) -> StoreResult<bool> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let n_deleted = with_writer!(self, pool => {
            sqlx::query("DELETE FROM workflow_shares WHERE workflow_id = $1 AND user_id = $2")
                .bind(workflow_id)
                .bind(user_id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(store_error)?;
        Ok(n_deleted == 1)
    }

    async fn list_versions(&self, workflow_id: i64) -> StoreResult<Vec<Version>> {
        let sql = concat!(
            "SELECT ",
            version_columns!(),
            " FROM workflow_versions WHERE workflow_id = $1 ORDER BY number DESC"
        );
        let rows: Vec<VersionRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(workflow_id).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows.into_iter().map(Version::from).collect())
    }

    async fn version(&self, workflow_id: i64, version_id: i64) -> StoreResult<Option<Version>> {
        let sql = concat!(
            "SELECT ",
            version_columns!(),
            " FROM workflow_versions WHERE workflow_id = $1 AND id = $2"
        );
        let row: Option<VersionRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(workflow_id).bind(version_id).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        Ok(row.map(Version::from))
    }

    async fn production_version(&self, workflow_id: i64) -> StoreResult<Option<Version>> {
        self.caches
            .production
            .get_or(workflow_id, async {
                let sql = concat!(
                    "SELECT ",
                    version_columns!(),
                    " FROM workflow_versions WHERE workflow_id = $1 AND is_production"
                );
                let row: Option<VersionRow> = with_pool!(self, pool => {
                    sqlx::query_as(sql).bind(workflow_id).fetch_optional(pool).await
                })
                .map_err(store_error)?;
                Ok(row.map(Version::from))
            })
            .await
    }

    async fn insert_version(
        &self,
        workflow_id: i64,
        version: &NewVersion,
        now: DateTime<Utc>,
    ) -> StoreResult<Version> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let now = stored_time(now);
        let row: Option<VersionRow> = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                // Lock the workflow row first: concurrent inserts then number in turn.
                let n_locked = sqlx::query("UPDATE workflows SET updated_at = $2 WHERE id = $1")
                    .bind(workflow_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n_locked == 0 {
                    return Ok::<_, sqlx::Error>(None);
                }
                let row: VersionRow = sqlx::query_as(INSERT_VERSION)
                    .bind(workflow_id)
                    .bind(&version.name)
                    .bind(Json(&version.graph))
                    .bind(false)
                    .bind(None::<DateTime<Utc>>)
                    .bind(None::<i64>)
                    .bind(version.created_by)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(row))
            }
            .await
        })
        .map_err(store_error)?;
        row.map(Version::from).ok_or(StoreError::NotFound)
    }

    async fn update_draft(
        &self,
        workflow_id: i64,
        version_id: i64,
        edit: &DraftEdit<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<DraftUpdate> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let sql = concat!(
            "UPDATE workflow_versions SET graph = $3, name = COALESCE($4, name), revision = revision + 1,
                updated_by = $5, updated_at = $6
             WHERE workflow_id = $1 AND id = $2 AND published_at IS NULL AND ($7 IS NULL OR revision = $7)
             RETURNING ",
            version_columns!()
        );
        let row: Option<VersionRow> = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(workflow_id)
                .bind(version_id)
                .bind(Json(edit.graph)).bind(edit.name).bind(edit.updated_by).bind(stored_time(now)).bind(edit.expected_revision)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        if let Some(row) = row {
            return Ok(DraftUpdate::Updated(Box::new(row.into())));
        }
        // Nothing changed: say why.
        Ok(match self.version(workflow_id, version_id).await? {
            None => DraftUpdate::NotFound,
            Some(version) if version.is_published() => DraftUpdate::Published,
            Some(version) => DraftUpdate::Stale {
                current: version.revision,
            },
        })
    }

    async fn publish_version(
        &self,
        workflow_id: i64,
        version_id: i64,
        revision: i64,
        published_by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Version>> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let now = stored_time(now);
        let sql = concat!(
            "UPDATE workflow_versions SET is_production = TRUE,
                published_at = COALESCE(published_at, $3), published_by = COALESCE(published_by, $4)
             WHERE workflow_id = $1 AND id = $2 AND revision = $5
             RETURNING ",
            version_columns!()
        );
        let row: Option<VersionRow> = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                // Lock the workflow row: publishes of one workflow run one at a time.
                sqlx::query("UPDATE workflows SET updated_at = $2 WHERE id = $1")
                    .bind(workflow_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE workflow_versions SET is_production = FALSE WHERE workflow_id = $1 AND is_production AND id <> $2")
                    .bind(workflow_id)
                    .bind(version_id)
                    .execute(&mut *tx)
                    .await?;
                let row: Option<VersionRow> = sqlx::query_as(sql)
                    .bind(workflow_id)
                    .bind(version_id)
                    .bind(now)
                    .bind(published_by)
                    .bind(revision)
                    .fetch_optional(&mut *tx)
                    .await?;
                if row.is_some() {
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(row)
            }
            .await
        })
        .map_err(store_error)?;
        Ok(row.map(Version::from))
    }

    async fn set_chatkit_default(&self, workflow_id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let _cleared = self.caches.after(Caches::workflows_changed);
        let backend = self.backend();
        let n_set = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                if backend == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(PG_CHATKIT_DEFAULT_LOCK)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE workflows SET is_chatkit_default = FALSE WHERE is_chatkit_default AND id <> $1")
                    .bind(workflow_id)
                    .execute(&mut *tx)
                    .await?;
                let n_set = sqlx::query("UPDATE workflows SET is_chatkit_default = TRUE, updated_at = $2 WHERE id = $1")
                    .bind(workflow_id)
                    .bind(stored_time(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // Dropping the transaction rolls it back: never leave no default at all.
                if n_set == 1 {
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(n_set)
            }
            .await
        })
        .map_err(store_error)?;
        Ok(n_set == 1)
    }

    async fn chatkit_default(&self) -> StoreResult<Option<Workflow>> {
        self.caches
            .workflows
            .get_or(WorkflowKey::ChatkitDefault, async {
                let sql = concat!(
                    "SELECT ",
                    workflow_columns!(),
                    " FROM workflows w WHERE w.is_chatkit_default"
                );
                let row: Option<WorkflowRow> = with_pool!(self, pool => {
                    sqlx::query_as(sql).fetch_optional(pool).await
                })
                .map_err(store_error)?;
                Ok(row.map(Workflow::from))
            })
            .await
    }
}
