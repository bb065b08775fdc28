//! `RunStore` on both backends: runs, their steps and their event log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    runs::{Event, HistoryEntry, Run, RunFailure, RunFilter, RunStatus, Step, Wait},
    store::{RunStore, StoreError, StoreResult},
};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Db, store_error, stored_time, with_pool};

macro_rules! run_columns {
    () => {
        "id, workflow_id, version_id, user_id, thread_id, status, current_node, input, state, last_output, history,
         scratch, wait, output, error, step_count, event_seq, created_at, updated_at, finished_at"
    };
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    workflow_id: i64,
    version_id: i64,
    user_id: Option<i64>,
    thread_id: Option<String>,
    status: String,
    current_node: Option<String>,
    input: Json<Value>,
    state: Json<Value>,
    last_output: Json<Value>,
    history: Json<Vec<HistoryEntry>>,
    scratch: Json<Value>,
    wait: Option<Json<Wait>>,
    output: Option<Json<Value>>,
    error: Option<Json<RunFailure>>,
    step_count: i64,
    event_seq: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;

    fn try_from(row: RunRow) -> Result<Run, StoreError> {
        Ok(Run {
            status: RunStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Other(format!("unknown run status `{}`", row.status)))?,
            id: row.id,
            workflow_id: row.workflow_id,
            version_id: row.version_id,
            user_id: row.user_id,
            thread_id: row.thread_id,
            current_node: row.current_node,
            input: row.input.0,
            state: row.state.0,
            last_output: row.last_output.0,
            history: row.history.0,
            scratch: row.scratch.0,
            wait: row.wait.map(|w| w.0),
            output: row.output.map(|o| o.0),
            error: row.error.map(|e| e.0),
            step_count: row.step_count,
            event_seq: row.event_seq,
            created_at: row.created_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct StepRow {
    seq: i64,
    node: String,
    kind: String,
    status: String,
    input: Json<Value>,
    output: Json<Value>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    duration_ms: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    kind: String,
    node: Option<String>,
    data: Json<Value>,
    at: DateTime<Utc>,
}

/// Inserts events of a run, in chunks well under SQLite's bound-value limit. A macro, not a
/// function: it expands for each backend's transaction type.
macro_rules! insert_events {
    ($tx:expr, $run_id:expr, $events:expr) => {
        async {
            for chunk in $events.chunks(1000) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO run_events (run_id, seq, kind, node, data, at) ",
                );
                insert.push_values(chunk, |mut row, event: &Event| {
                    row.push_bind($run_id)
                        .push_bind(event.seq)
                        .push_bind(&event.kind)
                        .push_bind(&event.node)
                        .push_bind(Json(&event.data))
                        .push_bind(stored_time(event.at));
                });
                insert.build().execute(&mut **$tx).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}

#[async_trait]
impl RunStore for Db {
    async fn insert_run(&self, run: &Run, events: &[Event]) -> StoreResult<()> {
        with_pool!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO runs (id, workflow_id, version_id, user_id, thread_id, status, current_node, input, state,
                        last_output, history, scratch, wait, output, error, step_count, event_seq, created_at, updated_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18, $19)",
                )
                .bind(&run.id)
                .bind(run.workflow_id)
                .bind(run.version_id)
                .bind(run.user_id)
                .bind(&run.thread_id)
                .bind(run.status.as_str())
                .bind(&run.current_node)
                .bind(Json(&run.input))
                .bind(Json(&run.state))
                .bind(Json(&run.last_output))
                .bind(Json(&run.history))
                .bind(Json(&run.scratch))
                .bind(run.wait.as_ref().map(Json))
                .bind(run.output.as_ref().map(Json))
                .bind(run.error.as_ref().map(Json))
                .bind(run.step_count)
                .bind(run.event_seq)
                .bind(stored_time(run.created_at))
                .bind(run.finished_at.map(stored_time))
                .execute(&mut *tx)
                .await?;
                insert_events!(&mut tx, &run.id, events).await?;
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)
    }

    async fn run(&self, id: &str) -> StoreResult<Option<Run>> {
        let sql = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");
        let row: Option<RunRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        row.map(Run::try_from).transpose()
    }

    async fn save_run(
        &self,
        run: &Run,
        steps: &[Step],
        events: &[Event],
        expected_event_seq: i64,
    ) -> StoreResult<bool> {
        with_pool!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let n_updated = sqlx::query(
                    "UPDATE runs SET status = $2, current_node = $3, state = $4, last_output = $5, history = $6, scratch = $7,
                        wait = $8, output = $9, error = $10, step_count = $11, event_seq = $12, updated_at = $13,
                        finished_at = $14, thread_id = $15, version_id = $17
                     WHERE id = $1 AND event_seq = $16",
                )
                .bind(&run.id)
                .bind(run.status.as_str())
                .bind(&run.current_node)
                .bind(Json(&run.state))
                .bind(Json(&run.last_output))
                .bind(Json(&run.history))
                .bind(Json(&run.scratch))
                .bind(run.wait.as_ref().map(Json))
                .bind(run.output.as_ref().map(Json))
                .bind(run.error.as_ref().map(Json))
                .bind(run.step_count)
                .bind(run.event_seq)
                .bind(stored_time(run.updated_at))
                .bind(run.finished_at.map(stored_time))
                .bind(&run.thread_id)
                .bind(expected_event_seq)
                .bind(run.version_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n_updated != 1 {
                    return Ok::<_, sqlx::Error>(false);
                }
                // One statement per kind of row, in chunks well under SQLite's bound-value limit.
                for chunk in steps.chunks(500) {
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO run_steps (run_id, seq, node, kind, status, input, output, error, started_at, duration_ms) ",
                    );
                    insert.push_values(chunk, |mut row, step| {
                        row.push_bind(&run.id)
                            .push_bind(step.seq)
                            .push_bind(&step.node)
                            .push_bind(&step.kind)
                            .push_bind(&step.status)
                            .push_bind(Json(&step.input))
                            .push_bind(Json(&step.output))
                            .push_bind(&step.error)
                            .push_bind(stored_time(step.started_at))
                            .push_bind(step.duration_ms);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                insert_events!(&mut tx, &run.id, events).await?;
                tx.commit().await?;
                Ok(true)
            }
            .await
        })
        .map_err(store_error)
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let sql = concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE ($1 IS NULL OR workflow_id = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR user_id = $3)
               AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6) AND ($7 IS NULL OR thread_id = $7)
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows: Vec<RunRow> = with_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(filter.workflow_id)
                .bind(filter.status.map(RunStatus::as_str))
                .bind(filter.user_id)
                .bind(filter.limit)
                .bind(filter.from.map(stored_time))
                .bind(filter.to.map(stored_time))
                .bind(filter.thread_id.as_deref())
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        rows.into_iter().map(Run::try_from).collect()
    }

    async fn run_steps(&self, run_id: &str) -> StoreResult<Vec<Step>> {
        let rows: Vec<StepRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, node, kind, status, input, output, error, started_at, duration_ms FROM run_steps
                 WHERE run_id = $1 ORDER BY seq",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| Step {
                seq: r.seq,
                node: r.node,
                kind: r.kind,
                status: r.status,
                input: r.input.0,
                output: r.output.0,
                error: r.error,
                started_at: r.started_at,
                duration_ms: r.duration_ms,
            })
            .collect())
    }

    async fn run_events(&self, run_id: &str, after_seq: i64) -> StoreResult<Vec<Event>> {
        let rows: Vec<EventRow> = with_pool!(self, pool => {
            sqlx::query_as("SELECT seq, kind, node, data, at FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
                .bind(run_id)
                .bind(after_seq)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| Event {
                seq: r.seq,
                kind: r.kind,
                node: r.node,
                data: r.data.0,
                at: r.at,
            })
            .collect())
    }

    async fn fail_abandoned_runs(
        &self,
        before: DateTime<Utc>,
        failure: &RunFailure,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Bumping the event sequence makes a process still advancing such a run fail its
        // next save instead of bringing the run back to life.
        let data = serde_json::json!({"code": failure.code, "message": failure.message});
        with_pool!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let failed: Vec<(String, i64)> = sqlx::query_as(
                    "UPDATE runs SET status = 'failed', error = $2, current_node = NULL, updated_at = $3, finished_at = $3,
                        event_seq = event_seq + 1
                     WHERE status = 'running' AND updated_at < $1
                     RETURNING id, event_seq",
                )
                .bind(stored_time(before))
                .bind(Json(failure))
                .bind(stored_time(now))
                .fetch_all(&mut *tx)
                .await?;
                for (run_id, seq) in &failed {
                    sqlx::query("INSERT INTO run_events (run_id, seq, kind, node, data, at) VALUES ($1, $2, 'run.failed', NULL, $3, $4)")
                        .bind(run_id)
                        .bind(seq)
                        .bind(Json(&data))
                        .bind(stored_time(now))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(failed.len() as u64)
            }
            .await
        })
        .map_err(store_error)
    }
}
