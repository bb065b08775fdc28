//! Live runs: what the process advancing a run shows its readers before it is saved.
//!
//! The event log in the database is the truth, and any replica can replay it. A run being
//! advanced in this process also publishes here: every event as it is produced (saved ones
//! are written in batches), and the ephemeral ones that are never saved: text, reasoning
//! and tool-argument deltas (`seq` 0). A reader in the same process subscribes for a live
//! stream; readers elsewhere poll the log and see whole messages instead of deltas.
//!
//! Invariant: an entry exists only while a run is being advanced here (a paused run costs
//! nothing), and events are kept only until they are saved.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

use tokio::sync::{broadcast, watch};

use super::Event;

/// How many live events a slow reader may fall behind before it misses some (it then
/// re-reads the log).
const CHANNEL: usize = 1024;

#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<String, Arc<LiveRun>>>,
}

pub struct LiveRun {
    /// Events are shared, not copied, between the advance and its readers.
    sender: broadcast::Sender<Arc<Event>>,
    /// The highest sequence number published.
    published: std::sync::atomic::AtomicI64,
    /// Events produced but not yet saved, in order.
    unsaved: Mutex<Vec<Arc<Event>>>,
    /// The answer being streamed since the last numbered event: (node, text). The lease's
    /// heartbeat saves it, so an answer cut short by a crash is not lost.
    partial: Mutex<Option<(String, String)>>,
    cancel: watch::Sender<bool>,
    /// A number was published twice (an attempt was undone and numbered again).
    renumbered: AtomicBool,
    /// How the advance here ended, for its subscribers.
    ended: Ended,
}

/// How a live run's advance here ended, read by its subscribers once their stream closes.
/// It holds no sender, so holding it never keeps a stream open.
#[derive(Clone, Debug, Default)]
pub struct Ended(Arc<AtomicI64>);

impl Ended {
    /// When the advance ended with every event it published saved exactly as published:
    /// the highest number published. A reader that was given every number up to it has
    /// nothing to read back from the log. `None` while running, or when some events were
    /// not saved or were numbered again.
    pub fn saved_as_shown(&self) -> Option<i64> {
        let upto = self.0.load(Ordering::Acquire);
        (upto > 0).then_some(upto)
    }
}

/// What a live subscriber gets: the unsaved events so far (after the events saved with
/// the run, for a run started with the subscription) and the stream of what follows.
/// Events numbered up to `published` and not in `unsaved` are in the log; everything
/// after comes through `events`.
pub struct Subscription {
    pub unsaved: Vec<Event>,
    pub events: broadcast::Receiver<Arc<Event>>,
    /// The highest number published when the subscription was taken.
    pub published: i64,
    /// How the advance ended, once it has.
    pub ended: Ended,
}

impl LiveRuns {
    /// Registers a run advanced by this process until the guard drops.
    pub(crate) fn open(self: &Arc<Self>, run_id: &str) -> LiveGuard {
        let (sender, _) = broadcast::channel(CHANNEL);
        let (cancel, _) = watch::channel(false);
        let run = Arc::new(LiveRun {
            sender,
            published: Default::default(),
            unsaved: Mutex::new(Vec::new()),
            partial: Mutex::new(None),
            cancel,
            renumbered: AtomicBool::new(false),
            ended: Ended::default(),
        });
        self.lock().insert(run_id.to_string(), run.clone());
        LiveGuard {
            runs: self.clone(),
            run_id: run_id.to_string(),
            run,
        }
    }

    /// Follows a run advanced by this process; `None` when it is not.
    pub fn subscribe(&self, run_id: &str) -> Option<Subscription> {
        let run = self.lock().get(run_id).cloned()?;
        // Subscribing under the buffer's lock: nothing is published between the copy and
        // the subscription.
        let unsaved = run.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        Some(Subscription {
            events: run.sender.subscribe(),
            unsaved: unsaved.iter().map(|e| Event::clone(e)).collect(),
            published: run.published.load(Ordering::Acquire),
            ended: run.ended.clone(),
        })
    }

    /// Signals a run advanced by this process to stop now; false when it is not here.
    pub(crate) fn cancel(&self, run_id: &str) -> bool {
        match self.lock().get(run_id) {
            Some(run) => {
                run.cancel.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// The highest sequence number a run advanced here has published (0 when it is not
    /// advanced here): a writer from outside the advance numbers its events past it.
    pub(crate) fn published(&self, run_id: &str) -> i64 {
        self.lock()
            .get(run_id)
            .map_or(0, |run| run.published.load(Ordering::Acquire))
    }

    /// The runs this process is advancing, with the answer each is streaming.
    pub fn leases(&self) -> Vec<super::RunLease> {
        let runs: Vec<(String, Arc<LiveRun>)> = self
            .lock()
            .iter()
            .map(|(id, run)| (id.clone(), run.clone()))
            .collect();
        runs.into_iter()
            .map(|(run_id, run)| {
                let partial = run.partial.lock().unwrap_or_else(|e| e.into_inner());
                let partial =
                    partial
                        .as_ref()
                        .filter(|(_, text)| !text.is_empty())
                        .map(|(node, text)| {
                            serde_json::json!({
                                "node": node,
                                "text": text,
                                "after_seq": run.published.load(Ordering::Acquire),
                            })
                        });
                super::RunLease { run_id, partial }
            })
            .collect()
    }

    /// Whether this process advances the run.
    pub fn is_live(&self, run_id: &str) -> bool {
        self.lock().contains_key(run_id)
    }

    /// How many runs this process is advancing.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveRun>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A run registered as live; unregisters on drop, which ends its subscribers' streams.
pub(crate) struct LiveGuard {
    runs: Arc<LiveRuns>,
    run_id: String,
    run: Arc<LiveRun>,
}

impl LiveGuard {
    pub(crate) fn publish(&self, event: Event) {
        let event = Arc::new(event);
        self.track_partial(&event);
        let mut unsaved = self.run.unsaved.lock().unwrap_or_else(|e| e.into_inner());
        if event.seq > 0 {
            unsaved.push(event.clone());
            let before = self.run.published.fetch_max(event.seq, Ordering::AcqRel);
            if event.seq <= before {
                self.run.renumbered.store(true, Ordering::Release);
            }
        }
        if self.run.sender.receiver_count() > 0 {
            // A subscriber that left meanwhile is not an error.
            let _ = self.run.sender.send(event);
        }
    }

    /// Follows the answer being streamed: text deltas add up; a numbered event (the whole
    /// message, or anything after it) starts over.
    fn track_partial(&self, event: &Event) {
        let mut partial = self.run.partial.lock().unwrap_or_else(|e| e.into_inner());
        if event.seq > 0 {
            *partial = None;
            return;
        }
        if event.kind != super::EventKind::AssistantDelta {
            return;
        }
        let node = event.node.as_deref().unwrap_or_default();
        let delta = event
            .data
            .get("delta")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        match partial.as_mut() {
            Some((open, text)) if open == node => text.push_str(delta),
            _ => *partial = Some((node.to_string(), delta.to_string())),
        }
    }

    /// Forgets the events now saved.
    pub(crate) fn saved(&self, up_to: i64) {
        self.run
            .unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| e.seq > up_to);
    }

    /// Whether anyone follows the run live (ephemeral events are not built otherwise).
    pub(crate) fn has_readers(&self) -> bool {
        self.run.sender.receiver_count() > 0
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        *self.run.cancel.borrow()
    }

    pub(crate) fn cancelled(&self) -> watch::Receiver<bool> {
        self.run.cancel.subscribe()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        // Said before the stream closes (the sender goes with the last `LiveRun`).
        let all_saved = self
            .run
            .unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if all_saved && !self.run.renumbered.load(Ordering::Acquire) {
            let published = self.run.published.load(Ordering::Acquire);
            self.run.ended.0.store(published, Ordering::Release);
        }
        let mut runs = self.runs.lock();
        if runs
            .get(&self.run_id)
            .is_some_and(|r| Arc::ptr_eq(r, &self.run))
        {
            runs.remove(&self.run_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn event(seq: i64) -> Event {
        Event {
            seq,
            kind: super::super::EventKind::Warning,
            node: None,
            data: json!({}),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn subscribers_get_unsaved_events_then_live_ones() {
        let runs = Arc::new(LiveRuns::default());
        assert!(runs.subscribe("r").is_none());
        let guard = runs.open("r");
        guard.publish(event(1));
        assert!(!guard.has_readers());
        guard.publish(event(0));
        guard.publish(event(2));
        guard.saved(1);
        let mut sub = runs.subscribe("r").unwrap();
        assert_eq!(
            sub.unsaved.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2]
        );
        guard.publish(event(3));
        assert_eq!(sub.events.recv().await.unwrap().seq, 3);
        assert!(runs.cancel("r"));
        assert!(*guard.cancelled().borrow());
        drop(guard);
        assert!(sub.events.recv().await.is_err(), "the stream ends");
        assert_eq!(runs.active(), 0);
        assert!(!runs.cancel("r"));
    }
}
