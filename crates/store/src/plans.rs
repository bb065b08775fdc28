//! The statements on hot paths (each turn, each page, each stream), and asking the
//! backend how it would run them, so a test can fail on a full scan of a growing table.
//!
//! Every statement here is the one the store runs: the same constant or the same
//! builder, with sample values.

use chrono::{TimeZone, Utc};
use domain::{
    chat::PageRequest,
    models::usage::GroupBy,
    runs::{RunFilter, RunStatus},
    store::StoreResult,
};
use sqlx::{AssertSqlSafe, Connection};

use crate::{
    Backend, Db, Pool,
    args::{Arg, Built, bind_args},
    chat, housekeeping, keys, knowledge, runs, store_error, usage,
};

/// A hot statement with sample values.
#[derive(Debug, Clone)]
pub struct HotStatement {
    /// What it is for, as the test names it.
    pub name: String,
    pub built: Built,
    /// Reads its rows in an index's order and stops at a LIMIT: walking that index from
    /// one end is how it should run, not a full scan.
    pub ordered_limit: bool,
}

fn statement(name: impl Into<String>, sql: &str, args: Vec<Arg>) -> HotStatement {
    HotStatement {
        name: name.into(),
        built: Built {
            sql: sql.to_string(),
            args,
        },
        ordered_limit: false,
    }
}

fn text(value: &str) -> Arg {
    Arg::Text(value.to_string())
}

/// Every hot statement of `backend`, with sample values.
pub fn hot_statements(backend: Backend) -> Vec<HotStatement> {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let page = |order, after: Option<&str>| PageRequest {
        limit: 20,
        order,
        after: after.map(str::to_string),
    };
    let mut list = vec![
        statement("a run", runs::RUN_BY_ID, vec![text("run_1")]),
        statement(
            "a thread's active run",
            runs::THREAD_ACTIVE_RUN,
            vec![text("thr_1")],
        ),
        statement("a run's steps", runs::RUN_STEPS, vec![text("run_1")]),
        statement(
            "a run's events after a sequence",
            runs::RUN_EVENTS_AFTER,
            vec![text("run_1"), Arg::Int(3)],
        ),
        statement(
            "a thread item",
            chat::CHAT_ITEM,
            vec![text("msg_1"), text("thr_1")],
        ),
        statement(
            "a thread's next item position",
            &format!("SELECT {}$1)", chat::NEXT_ITEM_SEQ),
            vec![text("thr_1")],
        ),
        statement(
            "a thread's items after one",
            chat::DELETE_ITEMS_AFTER,
            vec![text("thr_1"), text("msg_1")],
        ),
        statement(
            "an API key by hash",
            keys::API_KEY_BY_HASH,
            vec![text("abc")],
        ),
        statement("a session", keys::SESSION_BY_ID, vec![text("cks_1")]),
        statement(
            "a session by secret",
            keys::SESSION_BY_HASH,
            vec![text("abc")],
        ),
        statement(
            "a knowledge job",
            knowledge::KNOWLEDGE_JOB,
            vec![Arg::Int(1)],
        ),
        HotStatement {
            ordered_limit: true,
            ..statement(
                "a knowledge store's jobs",
                knowledge::STORE_JOBS,
                vec![Arg::Int(1)],
            )
        },
        HotStatement {
            ordered_limit: true,
            ..statement(
                "claiming a knowledge job",
                &knowledge::claim_job_sql(backend),
                vec![text("worker"), Arg::Time(at), Arg::Time(at), Arg::Time(at)],
            )
        },
    ];
    for (name, sql, args) in [
        (
            "retention: idle threads",
            housekeeping::IDLE_THREADS,
            vec![Arg::Time(at), Arg::Int(500)],
        ),
        (
            "retention: finished runs",
            housekeeping::FINISHED_RUNS,
            vec![Arg::Time(at), Arg::Int(500)],
        ),
        (
            "retention: old usage",
            housekeeping::OLD_USAGE,
            vec![Arg::Time(at), Arg::Int(500)],
        ),
        (
            "retention: loose uploads",
            housekeeping::LOOSE_UPLOADS,
            vec![Arg::Time(at), Arg::Int(500)],
        ),
    ] {
        list.push(HotStatement {
            ordered_limit: true,
            ..statement(name, sql, args)
        });
    }
    for group in [GroupBy::Day, GroupBy::User, GroupBy::Model] {
        list.push(statement(
            format!("the usage report by {group:?}"),
            usage::query(group, backend),
            vec![Arg::Time(at), Arg::Time(at)],
        ));
    }
    for order in [conversation::Order::Desc, conversation::Order::Asc] {
        for after in [None, Some("msg_1")] {
            for hidden in [true, false] {
                list.push(HotStatement {
                    name: format!(
                        "a page of a thread's items ({order:?}, after {after:?}, hidden {hidden})"
                    ),
                    built: chat::list_items_sql("thr_1", &page(order, after), hidden),
                    ordered_limit: true,
                });
            }
            for end_user in [None, Some("visitor")] {
                list.push(HotStatement {
                    name: format!(
                        "a page of threads ({order:?}, after {after:?}, end user {end_user:?})"
                    ),
                    built: chat::list_threads_sql(7, end_user, &page(order, after)),
                    ordered_limit: true,
                });
            }
        }
    }
    for thread in [None, Some("thr_1")] {
        list.push(HotStatement {
            name: format!("feedback (thread {thread:?})"),
            built: chat::list_feedback_sql(thread, 50),
            ordered_limit: true,
        });
    }
    let filters = [
        ("all", RunFilter::default()),
        (
            "a workflow",
            RunFilter {
                workflow_id: Some(1),
                ..RunFilter::default()
            },
        ),
        (
            "a user",
            RunFilter {
                user_id: Some(1),
                ..RunFilter::default()
            },
        ),
        (
            "a thread",
            RunFilter {
                thread_id: Some("thr_1".into()),
                ..RunFilter::default()
            },
        ),
        (
            "a status",
            RunFilter {
                status: Some(RunStatus::Failed),
                ..RunFilter::default()
            },
        ),
        (
            "a period",
            RunFilter {
                from: Some(at),
                to: Some(at),
                ..RunFilter::default()
            },
        ),
        (
            "a workflow's waiting runs of a user",
            RunFilter {
                workflow_id: Some(1),
                user_id: Some(1),
                status: Some(RunStatus::Waiting),
                ..RunFilter::default()
            },
        ),
    ];
    for (name, mut filter) in filters {
        filter.limit = 50;
        list.push(HotStatement {
            name: format!("runs of {name}"),
            built: runs::list_runs_sql(&filter),
            ordered_limit: true,
        });
    }
    list
}

impl Db {
    /// How the backend would run `statement`: SQLite's `EXPLAIN QUERY PLAN` details, or
    /// PostgreSQL's `EXPLAIN` lines with sequential scans discouraged (so a plan keeps one
    /// only where no index could serve, whatever the table's size).
    pub async fn explain(&self, statement: &HotStatement) -> StoreResult<Vec<String>> {
        let args = &statement.built.args;
        match &self.pool {
            Pool::Sqlite { read, .. } => {
                let sql = format!("EXPLAIN QUERY PLAN {}", statement.built.sql);
                let rows: Vec<(i64, i64, i64, String)> =
                    bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                        .fetch_all(read)
                        .await
                        .map_err(store_error)?;
                Ok(rows.into_iter().map(|row| row.3).collect())
            }
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(store_error)?;
                let mut tx = conn.begin().await.map_err(store_error)?;
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                let sql = format!("EXPLAIN {}", statement.built.sql);
                let rows: Vec<(String,)> = bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?;
                // EXPLAIN never writes; nothing to keep.
                tx.rollback().await.map_err(store_error)?;
                Ok(rows.into_iter().map(|row| row.0).collect())
            }
        }
    }
}

/// The lines of `plan` that read a whole table: SQLite's `SCAN t` without an index (or
/// with one, unless the statement reads in that index's order up to a limit), and
/// PostgreSQL's sequential scans.
pub fn full_scans(backend: Backend, statement: &HotStatement, plan: &[String]) -> Vec<String> {
    plan.iter()
        .filter(|line| match backend {
            Backend::Sqlite => {
                let line = line.trim();
                line.starts_with("SCAN ")
                    && !line.starts_with("SCAN CONSTANT ROW")
                    && !(statement.ordered_limit && line.contains(" USING "))
            }
            Backend::Postgres => line.contains("Seq Scan on "),
        })
        .cloned()
        .collect()
}
