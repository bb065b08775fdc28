//! Group commit for SQLite: the hot writes of many requests (a new thread, a run's start
//! and saves, chat items, usage records) share one transaction.
//!
//! Each write is a [`Batch`] of statements. The first writer to find no group running
//! spawns a leader task, which takes the queued batches, holds the write lane (so no
//! write through the write pool meets the file lock), and hands the group to the
//! [`Writer`] thread, which runs it inside one `BEGIN IMMEDIATE … COMMIT` and answers once
//! for the whole group. A batch that fails is undone alone (the transaction runs again
//! without it) and only its writer gets the error.
//!
//! Invariants:
//! - A writer is answered only after the commit that made its batch durable (or with the
//!   error that stopped it); a failed commit fails every batch of the group.
//! - Urgent batches (a new thread, whose first event a user is waiting for) are taken
//!   before the others; every group still takes a few others, so none waits forever.
//!   Batches that arrive while a group runs form the next one.
//! - The leader runs in its own task, so a caller that goes away (a client that hangs up)
//!   cannot stop a group halfway and leave other writers waiting.
//! - Between groups the lane is released, so other writes interleave.
//!
//! Why: on SQLite every commit appends each page it touched to the WAL, and every
//! hand-over to another thread is a context switch. Consecutive inserts into the same
//! tables touch the same pages, so a group writes them once, in two hand-overs.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use domain::store::{StoreError, StoreResult};
use tokio::sync::{Semaphore, oneshot};

use crate::writer::{Batch, Writer};

/// The most batches one transaction takes, so one group cannot hold the connection long.
const MAX_GROUP: usize = 64;
/// Once an urgent batch is in a group, the others it still takes (if waiting).
const MIN_OTHERS: usize = 16;

struct Job {
    batch: Batch,
    done: oneshot::Sender<StoreResult<()>>,
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
    lane: Arc<Semaphore>,
    writer: Writer,
    state: Mutex<State>,
}

impl GroupCommit {
    /// `lane` is the write pool's lane (see `Pool`), held while a group runs on `writer`.
    pub(crate) fn new(lane: Arc<Semaphore>, writer: Writer) -> Self {
        GroupCommit {
            lane,
            writer,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `batch` in a group's transaction; returns once that transaction is committed.
    /// An `urgent` batch (one a user is waiting to see) goes ahead of the others.
    pub(crate) async fn run(self: &Arc<Self>, batch: Batch, urgent: bool) -> StoreResult<()> {
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut state = self.lock();
            let job = Job { batch, done };
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
            // Writers woken by the same event (a run's save and the chat item it shows)
            // get to queue first: one group instead of two, for the price of a requeue.
            tokio::task::yield_now().await;
            let mut taken = Taken::default();
            let jobs: Vec<Job> = {
                let mut state = self.lock();
                let jobs: Vec<Job> = std::iter::from_fn(|| state.next(&mut taken)).collect();
                if jobs.is_empty() {
                    state.leading = false;
                }
                jobs
            };
            if jobs.is_empty() {
                return;
            }
            let (batches, answers): (Vec<Batch>, Vec<_>) =
                jobs.into_iter().map(|job| (job.batch, job.done)).unzip();
            // The lane is never closed; should it be, the group runs without it.
            let lane = self.lane.acquire().await;
            let results = self.writer.run(batches).await;
            drop(lane);
            for (done, result) in answers.into_iter().zip(results) {
                let _ = done.send(result);
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
            batch: Batch::new(),
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
