//! `RunStore` on both backends: runs, their steps and their event log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    models::usage::UsageRecord,
    runs::{
        Event, EventKind, ExpiredRun, HistoryEntry, PartialAnswer, Run, RunFailure, RunFilter,
        RunLease, RunStatus, Step, Wait,
    },
    store::{RunStore, StoreError, StoreResult},
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, types::Json};

use crate::{
    Backend, Db, STALE_SAVE,
    args::{Arg, Built, bind_args},
    store_error, stored_time, together,
    usage::push_insert_usage,
    with_pool, with_writer,
};

macro_rules! run_columns {
    () => {
        "id, workflow_id, version_id, user_id, thread_id, status, current_node, input, state, last_output, history,
         history_before, scratch, wait, output, error, step_count, event_seq, created_at, updated_at, finished_at"
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
    history_before: Option<String>,
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
            history_before: row.history_before,
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

/// Statements are pushed into query builders by these macros, written once for both
/// backends (each expands for the backend's builder). SQLite runs a write's statements as
/// one batch on its connection thread; PostgreSQL, one after the other in a transaction.
macro_rules! push_insert_run {
    ($b:expr, $run:expr) => {{
        let run = $run;
        $b.push(
            "INSERT INTO runs (id, workflow_id, version_id, user_id, thread_id, status, current_node, input, state,
                last_output, history, history_before, scratch, wait, output, error, step_count, event_seq, created_at, updated_at,
                finished_at) VALUES (",
        );
        let mut row = $b.separated(", ");
        row.push_bind(&run.id)
            .push_bind(run.workflow_id)
            .push_bind(run.version_id)
            .push_bind(run.user_id)
            .push_bind(&run.thread_id)
            .push_bind(run.status.as_str())
            .push_bind(&run.current_node)
            .push_bind(Json(&run.input))
            .push_bind(Json(&run.state))
            .push_bind(Json(&run.last_output))
            .push_bind(Json(&run.history))
            .push_bind(&run.history_before)
            .push_bind(Json(&run.scratch))
            .push_bind(run.wait.as_ref().map(Json))
            .push_bind(run.output.as_ref().map(Json))
            .push_bind(run.error.as_ref().map(Json))
            .push_bind(run.step_count)
            .push_bind(run.event_seq)
            .push_bind(stored_time(run.created_at))
            .push_bind(stored_time(run.created_at))
            .push_bind(run.finished_at.map(stored_time));
        $b.push(")");
    }};
}

/// The conditional save of a run's row: it changes only if no one saved since
/// `expected` (the event sequence the saver last read). When someone did, the statement
/// sets `event_seq` to NULL, which its NOT NULL constraint refuses: the whole batch or
/// transaction fails at once, on both backends and in one round trip, and
/// [`stale_save`] tells that failure apart.
macro_rules! push_update_run {
    ($b:expr, $run:expr, $expected:expr) => {{
        let run = $run;
        $b.push("UPDATE runs SET status = ")
            .push_bind(run.status.as_str())
            .push(", current_node = ")
            .push_bind(&run.current_node)
            .push(", state = ")
            .push_bind(Json(&run.state))
            .push(", last_output = ")
            .push_bind(Json(&run.last_output))
            .push(", history = ")
            .push_bind(Json(&run.history))
            .push(", scratch = ")
            .push_bind(Json(&run.scratch))
            .push(", wait = ")
            .push_bind(run.wait.as_ref().map(Json))
            .push(", output = ")
            .push_bind(run.output.as_ref().map(Json))
            .push(", error = ")
            .push_bind(run.error.as_ref().map(Json))
            .push(", step_count = ")
            .push_bind(run.step_count)
            .push(", event_seq = CASE WHEN event_seq = ")
            .push_bind($expected)
            .push(" THEN ")
            .push_bind(run.event_seq)
            .push(" ELSE NULL END, updated_at = ")
            .push_bind(stored_time(run.updated_at))
            .push(", finished_at = ")
            .push_bind(run.finished_at.map(stored_time))
            .push(", thread_id = ")
            .push_bind(&run.thread_id)
            .push(", version_id = ")
            .push_bind(run.version_id)
            .push(" WHERE id = ")
            .push_bind(&run.id);
    }};
}

/// Whether a save failed because the run was saved by someone else meanwhile (see
/// [`push_update_run!`]): the only NOT NULL violation a save can cause.
fn stale_save(err: &StoreError) -> bool {
    matches!(err, StoreError::Other(message) if message.starts_with(STALE_SAVE))
}

/// Tells the other replicas' listeners that the run was saved (PostgreSQL only; sent on
/// commit, so a listener that hears it reads the save).
macro_rules! push_notify_saved {
    ($b:expr, $run_id:expr) => {{
        $b.push("SELECT pg_notify('")
            .push(crate::listen::CHANNEL)
            .push("', ")
            .push_bind($run_id)
            .push(")");
    }};
}

/// Events of a run: one statement per chunk of 1,000 (well under the bound-value limits).
macro_rules! push_insert_events {
    ($b:expr, $run_id:expr, $chunk:expr) => {{
        let run_id = $run_id;
        $b.push("INSERT INTO run_events (run_id, seq, kind, node, data, at) ");
        $b.push_values($chunk, |mut row, event: &Event| {
            row.push_bind(run_id)
                .push_bind(event.seq)
                .push_bind(event.kind.as_str())
                .push_bind(&event.node)
                .push_bind(Json(&event.data))
                .push_bind(stored_time(event.at));
        });
    }};
}

/// Steps of a run: one statement per chunk of 500.
macro_rules! push_insert_steps {
    ($b:expr, $run_id:expr, $chunk:expr) => {{
        let run_id = $run_id;
        $b.push(
            "INSERT INTO run_steps (run_id, seq, node, kind, status, input, output, error, started_at, duration_ms) ",
        );
        $b.push_values($chunk, |mut row, step: &Step| {
            row.push_bind(run_id)
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
    }};
}

/// A run by its id.
pub(crate) const RUN_BY_ID: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");

/// A thread's unfinished run: the partial unique index `runs_one_active_per_thread`.
pub(crate) const THREAD_ACTIVE_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE thread_id = $1 AND status IN ('running', 'waiting')"
);

/// A run's steps in order: the primary key.
pub(crate) const RUN_STEPS: &str =
    "SELECT seq, node, kind, status, input, output, error, started_at, duration_ms
     FROM run_steps WHERE run_id = $1 ORDER BY seq";

/// A run's events after a sequence number: the primary key.
pub(crate) const RUN_EVENTS_AFTER: &str =
    "SELECT seq, kind, node, data, at FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq";

/// Runs newest first, filtered by what the filter gives (each filter has an index that
/// leads with it: `runs_workflow_idx`, `runs_user_idx`, `runs_thread_idx`,
/// `runs_status_created_idx`; with none, `runs_created_idx`).
pub(crate) fn list_runs_sql(filter: &RunFilter) -> Built {
    let mut built = Built::new(concat!("SELECT ", run_columns!(), " FROM runs WHERE TRUE"));
    if let Some(id) = filter.workflow_id {
        built.push(" AND workflow_id = ?", [Arg::Int(id)]);
    }
    if let Some(status) = filter.status {
        built.push(" AND status = ?", [Arg::Text(status.as_str().into())]);
    }
    if let Some(id) = filter.user_id {
        built.push(" AND user_id = ?", [Arg::Int(id)]);
    }
    if let Some(id) = &filter.thread_id {
        built.push(" AND thread_id = ?", [Arg::Text(id.clone())]);
    }
    if let Some(from) = filter.from {
        built.push(" AND created_at >= ?", [Arg::time(from)]);
    }
    if let Some(to) = filter.to {
        built.push(" AND created_at < ?", [Arg::time(to)]);
    }
    built.push(
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        [Arg::Int(filter.limit)],
    );
    built
}

const EVENT_CHUNK: usize = 1000;
const STEP_CHUNK: usize = 500;

#[async_trait]
impl RunStore for Db {
    async fn insert_run(&self, run: &Run, events: &[Event]) -> StoreResult<()> {
        // Urgent: whoever starts a run waits for its first event (a new chat thread's
        // first event waits for both).
        together!(self, urgent: true, |b| {
            push_insert_run!(b, run);
            for chunk in events.chunks(EVENT_CHUNK) {
                next!();
                push_insert_events!(b, &run.id, chunk);
            }
            if self.backend == Backend::Postgres {
                next!();
                push_notify_saved!(b, &run.id);
            }
        })?;
        self.run_signals.saved(&run.id);
        Ok(())
    }

    async fn run(&self, id: &str) -> StoreResult<Option<Run>> {
        let row: Option<RunRow> =
            with_pool!(self, pool => sqlx::query_as(RUN_BY_ID).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        row.map(Run::try_from).transpose()
    }

    async fn save_run(
        &self,
        run: &Run,
        steps: &[Step],
        events: &[Event],
        usage: &[UsageRecord],
        expected_event_seq: i64,
    ) -> StoreResult<bool> {
        let saved = together!(self, urgent: false, |b| {
            push_update_run!(b, run, expected_event_seq);
            for record in usage {
                next!();
                push_insert_usage!(b, record);
            }
            for chunk in steps.chunks(STEP_CHUNK) {
                next!();
                push_insert_steps!(b, &run.id, chunk);
            }
            for chunk in events.chunks(EVENT_CHUNK) {
                next!();
                push_insert_events!(b, &run.id, chunk);
            }
            if self.backend == Backend::Postgres {
                next!();
                push_notify_saved!(b, &run.id);
            }
        });
        match saved {
            Ok(()) => {
                self.run_signals.saved(&run.id);
                Ok(true)
            }
            Err(err) if stale_save(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        let built = list_runs_sql(filter);
        let rows: Vec<RunRow> = with_pool!(self, pool => {
            bind_args!(sqlx::query_as(AssertSqlSafe(built.sql.as_str())), &built.args)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        rows.into_iter().map(Run::try_from).collect()
    }

    async fn run_steps(&self, run_id: &str) -> StoreResult<Vec<Step>> {
        let rows: Vec<StepRow> = with_pool!(self, pool => {
            sqlx::query_as(RUN_STEPS)
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
            sqlx::query_as(RUN_EVENTS_AFTER)
                .bind(run_id)
                .bind(after_seq)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        rows.into_iter()
            .map(|r| {
                Ok(Event {
                    seq: r.seq,
                    kind: EventKind::parse(&r.kind).ok_or_else(|| {
                        StoreError::Other(format!(
                            "run event {} has an unknown kind `{}`",
                            r.seq, r.kind
                        ))
                    })?,
                    node: r.node,
                    data: r.data.0,
                    at: r.at,
                })
            })
            .collect()
    }

    async fn thread_active_run(&self, thread_id: &str) -> StoreResult<Option<Run>> {
        let row: Option<RunRow> = with_pool!(self, pool => {
            sqlx::query_as(THREAD_ACTIVE_RUN).bind(thread_id).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        row.map(Run::try_from).transpose()
    }

    async fn renew_run_leases(&self, leases: &[RunLease], now: DateTime<Utc>) -> StoreResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                for lease in leases {
                    sqlx::query(
                        "UPDATE runs SET heartbeat_at = $2, partial = $3 WHERE id = $1 AND status = 'running'",
                    )
                    .bind(&lease.run_id)
                    .bind(stored_time(now))
                    .bind(lease.partial.as_ref().map(Json))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)
    }

    async fn fail_expired_runs(
        &self,
        before: DateTime<Utc>,
        only: Option<&str>,
        failure: &RunFailure,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ExpiredRun>> {
        // Bumping the event sequence makes a process still advancing such a run fail its
        // next save instead of bringing the run back to life. Only running runs are read
        // (the partial index `runs_running_idx`), or the one run named.
        macro_rules! expired {
            ($only:literal) => {
                concat!(
                    "UPDATE runs SET status = 'failed', error = $2, current_node = NULL, updated_at = $3, finished_at = $3,
                        event_seq = event_seq + 1
                     WHERE status = 'running'
                       AND (CASE WHEN heartbeat_at > updated_at THEN heartbeat_at ELSE updated_at END) < $1",
                    $only,
                    " RETURNING id, event_seq, thread_id, user_id, partial"
                )
            };
        }
        let sql = match only {
            Some(_) => expired!(" AND id = $4"),
            None => expired!(""),
        };
        let data = serde_json::json!({"code": failure.code, "message": failure.message});
        type Row = (
            String,
            i64,
            Option<String>,
            Option<i64>,
            Option<Json<Value>>,
        );
        let failed: Vec<Row> = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let mut query = sqlx::query_as(sql)
                    .bind(stored_time(before))
                    .bind(Json(failure))
                    .bind(stored_time(now));
                if let Some(id) = only {
                    query = query.bind(id);
                }
                let failed: Vec<Row> = query.fetch_all(&mut *tx).await?;
                for (run_id, seq, ..) in &failed {
                    sqlx::query("INSERT INTO run_events (run_id, seq, kind, node, data, at) VALUES ($1, $2, 'run.failed', NULL, $3, $4)")
                        .bind(run_id)
                        .bind(seq)
                        .bind(Json(&data))
                        .bind(stored_time(now))
                        .execute(&mut *tx)
                        .await?;
                    if self.backend == Backend::Postgres {
                        sqlx::query(crate::listen::NOTIFY_SAVED).bind(run_id).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(failed)
            }
            .await
        })
        .map_err(store_error)?;
        for (run_id, ..) in &failed {
            self.run_signals.saved(run_id);
        }
        Ok(failed
            .into_iter()
            .map(|(run_id, seq, thread_id, user_id, partial)| {
                // `seq` is the failure's number; the last saved event came before it. A
                // partial answer taken before that save is already in the log.
                let partial = partial.and_then(|Json(p)| {
                    let after = p.get("after_seq").and_then(Value::as_i64)?;
                    (after >= seq - 1).then(|| PartialAnswer {
                        node: p
                            .get("node")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        text: p
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                });
                ExpiredRun {
                    run_id,
                    thread_id,
                    user_id,
                    partial: partial.filter(|p| !p.text.is_empty()),
                }
            })
            .collect())
    }
}
