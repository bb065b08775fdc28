//! Group commit for SQLite: the hot writes of many requests (a new thread, a run's start
//! and saves, chat items, usage records) share one transaction.
//!
//! Each write is a batch of statements. The first writer to find no group running spawns
//! a leader task, which takes the write connection and runs queued batches inside one
//! `BEGIN IMMEDIATE … COMMIT`, each in its own savepoint, then answers each writer. A batch
//! that fails is rolled back to its savepoint and only its writer gets the error. The
//! `BEGIN` travels in the first batch's call and, when no other batch is waiting, the
//! `COMMIT` too: a lone write is one hand-over to the connection's thread, not three.
//!
//! Invariants:
//! - A writer is answered only after the commit that made its batch durable (or with the
//!   error that stopped it); a failed commit fails every batch of the group.
//! - Urgent batches (a new thread, whose first event a user is waiting for) are taken
//!   before the others, even into a group already running, and the group commits soon
//!   after one joins; every group still takes a few others, so none waits forever.
//! - The leader runs in its own task, so a caller that goes away (a client that hangs up)
//!   cannot stop a group halfway and leave other writers waiting.
//! - Between groups the connection goes back to the pool, so other writes interleave.
//!
//! Why: on SQLite every commit appends each page it touched to the WAL, and every
//! statement is a hand-over to the connection's thread. Consecutive inserts into the same
//! tables touch the same pages, so a group writes them once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use domain::store::{StoreError, StoreResult};
use sqlx::{AssertSqlSafe, Execute, QueryBuilder, Sqlite, SqlitePool, sqlite::SqliteArguments};
use tokio::sync::oneshot;

use crate::store_error;

/// How a batch starts; [`GroupCommit::run`] ends it.
pub(crate) const BATCH_START: &str = "SAVEPOINT batch;\n";

/// The most batches one transaction takes, so one group cannot hold the connection long.
const MAX_GROUP: usize = 64;
/// Once an urgent batch is in a group, the others it still takes (if waiting).
const MIN_OTHERS: usize = 16;

struct Job {
    sql: String,
    args: SqliteArguments,
    done: oneshot::Sender<StoreResult<()>>,
}

impl Job {
    /// Runs the batch, after `before` and followed by `after` in the same call: one
    /// hand-over to the connection's thread however many statements it holds.
    async fn execute(
        &mut self,
        conn: &mut sqlx::SqliteConnection,
        before: &str,
        after: &str,
    ) -> Result<(), sqlx::Error> {
        let args = std::mem::take(&mut self.args);
        let sql = if before.is_empty() && after.is_empty() {
            std::mem::take(&mut self.sql)
        } else {
            format!("{before}{}{after}", self.sql)
        };
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(conn)
            .await
            .map(drop)
    }
}

#[derive(Default)]
struct State {
    urgent: VecDeque<Job>,
    others: VecDeque<Job>,
    leading: bool,
}

/// What the group being built has taken so far.
#[derive(Default)]
struct Taken {
    all: usize,
    others: usize,
    urgent: bool,
}

impl State {
    /// The next batch for the group, or `None` when it should commit now.
    fn next(&mut self, taken: &mut Taken) -> Option<Job> {
        if taken.all >= MAX_GROUP {
            return None;
        }
        let job = match self.urgent.pop_front() {
            Some(job) => {
                taken.urgent = true;
                job
            }
            None if !taken.urgent || taken.others < MIN_OTHERS => {
                taken.others += 1;
                self.others.pop_front()?
            }
            None => return None,
        };
        taken.all += 1;
        Some(job)
    }
}

pub(crate) struct GroupCommit {
    pool: SqlitePool,
    state: Mutex<State>,
}

impl GroupCommit {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        GroupCommit {
            pool,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `batch` (begun with [`BATCH_START`], statements separated by `;`) in a group's
    /// transaction; returns once that transaction is committed. An `urgent` batch (one a
    /// user is waiting to see) goes ahead of the others.
    pub(crate) async fn run(
        self: &Arc<Self>,
        mut batch: QueryBuilder<Sqlite>,
        urgent: bool,
    ) -> StoreResult<()> {
        batch.push(";\nRELEASE batch");
        let args = batch
            .build()
            .take_arguments()
            .ok()
            .flatten()
            .unwrap_or_default();
        let sql = batch.into_string();
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut state = self.lock();
            let job = Job { sql, args, done };
            if urgent {
                state.urgent.push_back(job);
            } else {
                state.others.push_back(job);
            }
            !std::mem::replace(&mut state.leading, true)
        };
        if lead {
            let this = self.clone();
            tokio::spawn(async move {
                // Should the leader ever stop early (a panic), the next writer leads.
                let mut reset = Reset(Some(&this));
                this.lead().await;
                // It stopped because nothing was waiting, and said so itself.
                reset.0 = None;
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the database writer stopped".into(),
            ))
        })
    }

    /// Commits groups until no batch is waiting.
    async fn lead(&self) {
        loop {
            let mut taken = Taken::default();
            let Some((first, alone)) = ({
                let mut state = self.lock();
                let first = state.next(&mut taken);
                if first.is_none() {
                    state.leading = false;
                }
                let alone = state.urgent.is_empty() && state.others.is_empty();
                first.map(|job| (job, alone))
            }) else {
                return;
            };
            match self.pool.acquire().await {
                Ok(mut conn) if alone => Self::commit_alone(&mut conn, first).await,
                Ok(mut conn) => self.commit(&mut conn, first, taken).await,
                Err(err) => {
                    let _ = first.done.send(Err(store_error(err)));
                }
            }
        }
    }

    /// Runs a batch that nothing else was waiting to join: transaction, batch and commit in
    /// one call. Whatever failed (the batch or the commit), nothing of it stays.
    async fn commit_alone(conn: &mut sqlx::SqliteConnection, mut job: Job) {
        let result = job
            .execute(&mut *conn, "BEGIN IMMEDIATE;\n", ";\nCOMMIT")
            .await;
        if result.is_err() {
            // Fails harmlessly when the failure already ended the transaction.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        let _ = job.done.send(result.map_err(store_error));
    }

    /// Runs `first` and the batches that join it in one transaction.
    async fn commit(&self, conn: &mut sqlx::SqliteConnection, mut first: Job, mut taken: Taken) {
        // The transaction begins in the first batch's call; should that batch fail, its
        // transaction holds nothing else and is rolled back whole, and the batches that
        // were waiting form the next group.
        if let Err(err) = first.execute(&mut *conn, "BEGIN IMMEDIATE;\n", "").await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            let _ = first.done.send(Err(store_error(err)));
            return;
        }
        let mut answers = vec![(first.done, Ok(()))];
        let mut next = self.lock().next(&mut taken);
        while let Some(mut job) = next {
            let result = match job.execute(&mut *conn, "", "").await {
                Ok(_) => Ok(()),
                Err(err) => {
                    // Undo what the batch did before its failing statement; the rest stays.
                    let _ = sqlx::raw_sql("ROLLBACK TO batch; RELEASE batch")
                        .execute(&mut *conn)
                        .await;
                    Err(store_error(err))
                }
            };
            answers.push((job.done, result));
            next = self.lock().next(&mut taken);
        }
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => {
                for (done, result) in answers {
                    let _ = done.send(result);
                }
            }
            Err(err) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                let message = store_error(err).to_string();
                for (done, _) in answers {
                    let _ = done.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

/// Clears `leading` if the leader's task ends without doing so.
struct Reset<'a>(Option<&'a GroupCommit>);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            group.lock().leading = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            sql: String::new(),
            args: SqliteArguments::default(),
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn urgent_batches_go_first_and_close_the_group_soon() {
        let mut state = State::default();
        for _ in 0..100 {
            state.others.push_back(job());
        }
        let mut taken = Taken::default();
        for _ in 0..3 {
            assert!(state.next(&mut taken).is_some());
        }
        // Urgent batches arrive mid-group: they are next, then others up to MIN_OTHERS
        // in all (three were taken already), then the group commits.
        state.urgent.push_back(job());
        state.urgent.push_back(job());
        let mut n = 0;
        while state.next(&mut taken).is_some() {
            n += 1;
        }
        assert_eq!(n, 2 + MIN_OTHERS - 3);
        assert!(state.urgent.is_empty());
        assert_eq!(state.others.len(), 100 - MIN_OTHERS);

        // A group that starts with an urgent batch still takes others along.
        let mut taken = Taken::default();
        state.urgent.push_back(job());
        let mut n = 0;
        while state.next(&mut taken).is_some() {
            n += 1;
        }
        assert_eq!(n, 1 + MIN_OTHERS);

        // Without urgent ones, a group is bounded.
        let mut taken = Taken::default();
        let mut n = 0;
        while state.next(&mut taken).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_GROUP);
    }
}
