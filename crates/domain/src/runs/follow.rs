//! Following a run: its events after a sequence number, for every reader (the run API's
//! server-sent events, chat, the command line), on any replica.
//!
//! Invariants:
//! - While the run advances in this process, events come from the live hub as they are
//!   produced, with the ephemeral ones (`seq` 0: text deltas); numbers the live channel
//!   skipped (saved before the subscription, or missed by a reader that fell behind) are
//!   read from the log first, so no numbered event is lost or given twice.
//! - Otherwise the log is read when the run is saved (`signals`: a wake-up from this
//!   process's store, or on PostgreSQL from another replica's through `LISTEN`), and
//!   otherwise only as a slow safety net, until the run stops running (or, for a reader
//!   that follows it [`through its waits`](Follower::through_waits), until it finishes);
//!   its status is read before its events, so the last read sees them all. A follower
//!   with nothing new for `MAX_IDLE` ends.
//! - The log is the truth: once live following ends, the log is read again from the last
//!   number it confirmed, and an event it holds under a number the live channel showed
//!   with another kind (an attempt that was undone) is given again. The one exception:
//!   an advance that stopped the run (an end or a wait) and saved every event exactly as
//!   it showed it, to a reader that was given all of them; nothing is left to read then.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::broadcast;

use super::{
    Event, EventKind, RunStatus,
    live::{Ended, Subscription},
    signals::RunWatch,
};
use crate::Services;

/// How long a reader of a run not advancing here first waits for a wake-up before it
/// reads the log anyway: the safety net under the wake-ups, which every save of this
/// process (and on PostgreSQL of every replica) sends; only a save by another process
/// writing the same SQLite file (the command line) has none.
const SAFETY_NET_FIRST: Duration = Duration::from_secs(30);
/// The longest such a wait grows to while the run stays quiet.
const SAFETY_NET_AT_MOST: Duration = Duration::from_secs(300);
/// A follower with no new event for this long ends (a reader reconnects with its last
/// number).
pub const MAX_IDLE: Duration = Duration::from_secs(30 * 60);

/// What a reader was given and what the log confirmed: the bookkeeping that keeps live
/// and logged events from being lost, doubled or left uncorrected.
#[derive(Debug, Default)]
struct Ledger {
    /// The highest sequence number given so far.
    queued: i64,
    /// The kind of the event numbered `queued`, when one was given.
    last: Option<EventKind>,
    /// The highest sequence number read from the log.
    confirmed: i64,
    /// Numbered events given from the live channel and not yet seen in the log, by number.
    unconfirmed: BTreeMap<i64, EventKind>,
    pending: VecDeque<Event>,
}

impl Ledger {
    fn after(after: i64) -> Ledger {
        Ledger {
            queued: after,
            confirmed: after,
            ..Ledger::default()
        }
    }

    /// An event from the live channel.
    fn queue(&mut self, event: Event) {
        if event.seq == 0 {
            self.pending.push_back(event);
        } else if event.seq > self.queued {
            self.queued = event.seq;
            self.last = Some(event.kind);
            self.unconfirmed.insert(event.seq, event.kind);
            self.pending.push_back(event);
        }
    }

    /// Whether the reader was given every event of an advance that stopped the run and
    /// saved all it showed as shown.
    fn saw_all_of(&self, ended: &Ended) -> bool {
        ended.saved_as_shown() == Some(self.queued) && self.last.is_some_and(EventKind::stops)
    }

    /// Events read from the log, in order.
    fn logged(&mut self, events: Vec<Event>) {
        for event in events {
            let shown = self.unconfirmed.remove(&event.seq);
            self.confirmed = self.confirmed.max(event.seq);
            if event.seq > self.queued {
                self.queued = event.seq;
                self.last = Some(event.kind);
                self.pending.push_back(event);
            } else if shown.is_some_and(|kind| kind != event.kind) {
                self.pending.push_back(event);
            }
        }
        // Live events under numbers the log has passed were never saved.
        let confirmed = self.confirmed;
        self.unconfirmed.retain(|seq, _| *seq > confirmed);
    }
}

/// A run's events after a number, one at a time ([`Follower::next`]).
pub struct Follower {
    services: Services,
    run_id: String,
    ledger: Ledger,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    /// How the live advance ended, for the subscription in `live`.
    ended: Ended,
    done: bool,
    wait: Duration,
    idle_since: Instant,
    /// Wakes the follower when the run is saved; taken before the log is first read.
    watch: Option<RunWatch>,
    /// Follow the run through its waits, until it finishes.
    through_waits: bool,
}

impl Follower {
    /// Follows the run `run_id` from after event `after`. The caller has checked that
    /// its reader may see the run. `subscription` is one taken when this process started
    /// or resumed the run (what was saved before it is read from the log when the first
    /// live event shows the gap).
    pub fn new(
        services: &Services,
        run_id: &str,
        after: i64,
        subscription: Option<Subscription>,
    ) -> Follower {
        let mut follower = Follower {
            services: services.clone(),
            run_id: run_id.to_string(),
            ledger: Ledger::after(after),
            live: None,
            ended: Ended::default(),
            done: false,
            wait: SAFETY_NET_FIRST,
            idle_since: Instant::now(),
            watch: None,
            through_waits: false,
        };
        if let Some(subscription) = subscription {
            subscription
                .unsaved
                .into_iter()
                .for_each(|e| follower.ledger.queue(e));
            follower.live = Some(subscription.events);
            follower.ended = subscription.ended;
        }
        follower
    }

    /// Follows the run through its waits (until it completes, fails or is cancelled),
    /// not only until it stops running.
    pub fn through_waits(mut self) -> Follower {
        self.through_waits = true;
        self
    }

    /// The next event, or `None` once the run stopped running (or stayed quiet for
    /// [`MAX_IDLE`]) and every event was given.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ledger.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.live.is_none()
                && let Some(subscription) = self.services.live.subscribe(&self.run_id)
            {
                // Subscribed first, then the saved backlog up to the subscription: nothing
                // falls between the two, and nothing comes twice.
                let upto = subscription.published;
                match self.read_log(self.ledger.confirmed).await {
                    Some((_, events)) => self
                        .ledger
                        .logged(events.into_iter().filter(|e| e.seq <= upto).collect()),
                    None => self.done = true,
                }
                subscription
                    .unsaved
                    .into_iter()
                    .for_each(|e| self.ledger.queue(e));
                self.live = Some(subscription.events);
                self.ended = subscription.ended;
                continue;
            }
            if let Some(live) = self.live.as_mut() {
                match tokio::time::timeout(MAX_IDLE, live.recv()).await {
                    Ok(Ok(event)) => {
                        // Numbers skipped since the last one given were saved before the
                        // subscription (or undone): read them from the log first.
                        if event.seq > self.ledger.queued + 1
                            && let Some((_, events)) = self.read_log(self.ledger.queued).await
                        {
                            self.ledger
                                .logged(events.into_iter().filter(|e| e.seq < event.seq).collect());
                        }
                        self.ledger.queue(Arc::unwrap_or_clone(event));
                    }
                    // The run stopped here with everything given saved as given: the log
                    // holds nothing more.
                    // (Followed through its waits, a run that waits goes on: read the log
                    // and wait for its next save.)
                    Ok(Err(broadcast::error::RecvError::Closed))
                        if self.ledger.saw_all_of(&self.ended) =>
                    {
                        if self.through_waits {
                            self.live = None;
                        } else {
                            self.done = true;
                        }
                    }
                    // Fell behind, or the run stopped advancing here: read the log.
                    Ok(Err(_)) => self.live = None,
                    Err(_) => self.done = true,
                }
                continue;
            }
            // The status is read before the events: once it is no longer `running`, every
            // event of the run is already visible in the same read. After following live,
            // the log is read again from the last number it confirmed, so what the live
            // channel showed differently is corrected.
            // Watching starts before the read: a save committed after it began wakes the
            // wait below, so none falls in between.
            let mut watch = self
                .watch
                .take()
                .unwrap_or_else(|| self.services.run_signals.watch(&self.run_id));
            match self.read_log(self.ledger.confirmed).await {
                Some((status, events)) => {
                    let going = status == RunStatus::Running
                        || (self.through_waits && status == RunStatus::Waiting);
                    let before = self.ledger.confirmed;
                    self.ledger.logged(events);
                    if self.ledger.confirmed > before {
                        self.wait = SAFETY_NET_FIRST;
                        self.idle_since = Instant::now();
                    } else if going && self.idle_since.elapsed() < MAX_IDLE {
                        tokio::select! {
                            () = watch.saved() => {}
                            () = tokio::time::sleep(self.wait) => {
                                // Quiet runs are read less and less often.
                                self.wait = (self.wait * 2).min(SAFETY_NET_AT_MOST);
                            }
                        }
                    }
                    self.done = !going || self.idle_since.elapsed() >= MAX_IDLE;
                }
                None => self.done = true,
            }
            self.watch = Some(watch);
        }
    }

    async fn read_log(&self, after: i64) -> Option<(RunStatus, Vec<Event>)> {
        match super::poll(&self.services, &self.run_id, after).await {
            Ok(read) => Some(read),
            Err(err) => {
                tracing::warn!(run_id = %self.run_id, error = %err, "could not read a run's events");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn event(seq: i64, kind: EventKind) -> Event {
        Event {
            seq,
            kind,
            node: None,
            data: json!({}),
            at: Utc::now(),
        }
    }

    fn given(ledger: &mut Ledger) -> Vec<(i64, EventKind)> {
        ledger.pending.drain(..).map(|e| (e.seq, e.kind)).collect()
    }

    #[test]
    fn live_and_logged_events_come_once_and_in_order() {
        let mut ledger = Ledger::after(2);
        // The log up to what the reader has is not given again.
        ledger.logged(vec![
            event(2, EventKind::NodeFinished),
            event(3, EventKind::Branch),
        ]);
        ledger.queue(event(3, EventKind::Branch));
        ledger.queue(event(0, EventKind::AssistantDelta));
        ledger.queue(event(4, EventKind::AssistantMessage));
        assert_eq!(
            given(&mut ledger),
            [
                (3, EventKind::Branch),
                (0, EventKind::AssistantDelta),
                (4, EventKind::AssistantMessage)
            ]
        );
        // The log confirms 4 and holds 5 too.
        ledger.logged(vec![
            event(4, EventKind::AssistantMessage),
            event(5, EventKind::RunCompleted),
        ]);
        assert_eq!(given(&mut ledger), [(5, EventKind::RunCompleted)]);
        assert!(ledger.unconfirmed.is_empty());
    }

    #[test]
    fn what_the_log_holds_differently_is_given_again() {
        let mut ledger = Ledger::after(0);
        ledger.queue(event(1, EventKind::NodeFinished));
        ledger.queue(event(2, EventKind::ToolCallStarted));
        given(&mut ledger);
        // The attempt was undone: the log has another event under 2, and never saved 3.
        ledger.queue(event(3, EventKind::ToolCallFinished));
        given(&mut ledger);
        ledger.logged(vec![
            event(1, EventKind::NodeFinished),
            event(2, EventKind::RunCancelled),
        ]);
        assert_eq!(given(&mut ledger), [(2, EventKind::RunCancelled)]);
        // Number 3 stays to be confirmed; once the log passes it, it is forgotten.
        ledger.logged(vec![event(4, EventKind::RunFailed)]);
        assert_eq!(given(&mut ledger), [(4, EventKind::RunFailed)]);
        assert!(ledger.unconfirmed.is_empty());
    }
}
