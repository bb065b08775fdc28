//! Wake-ups when a run is saved: a reader following a run that is not advancing in this
//! process waits here instead of reading the run's log on a timer.
//!
//! Invariants:
//! - The store signals every run save it commits in this process; on PostgreSQL, saves
//!   committed by other replicas arrive through `LISTEN`/`NOTIFY` (the store's listener),
//!   and a listener that lost its connection wakes every watcher, since notifications may
//!   have been missed meanwhile.
//! - A watch taken before a reader reads the log sees every save committed after that
//!   read began: nothing falls between the read and the wait.
//! - An entry lives only while someone watches the run; an idle watcher costs a channel
//!   and a map entry, no timer wakes and no database reads beyond a slow safety net.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use tokio::sync::watch;

/// Every run watched in this process, by id.
#[derive(Default)]
pub struct RunSignals {
    runs: Mutex<HashMap<String, Weak<watch::Sender<u64>>>>,
}

/// A watch on one run's saves.
pub struct RunWatch {
    receiver: watch::Receiver<u64>,
    /// Keeps the run's entry alive while watched.
    _sender: Arc<watch::Sender<u64>>,
}

impl RunSignals {
    /// Starts watching `run_id`: [`RunWatch::saved`] returns once it is saved after now.
    pub fn watch(&self, run_id: &str) -> RunWatch {
        let mut runs = self.runs.lock().expect("run signals lock");
        if let Some(sender) = runs.get(run_id).and_then(Weak::upgrade) {
            return RunWatch {
                receiver: sender.subscribe(),
                _sender: sender,
            };
        }
        // Entries of runs no longer watched go when the map has doubled since the last
        // sweep, so it stays as large as what is watched.
        if runs.len() >= 64 && runs.len().is_power_of_two() {
            runs.retain(|_, sender| sender.strong_count() > 0);
        }
        let sender = Arc::new(watch::Sender::new(0));
        runs.insert(run_id.to_string(), Arc::downgrade(&sender));
        RunWatch {
            receiver: sender.subscribe(),
            _sender: sender,
        }
    }

    /// `run_id` was saved: wakes its watchers.
    pub fn saved(&self, run_id: &str) {
        let sender = {
            let runs = self.runs.lock().expect("run signals lock");
            runs.get(run_id).and_then(Weak::upgrade)
        };
        if let Some(sender) = sender {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every watcher (saves may have been missed: a listener reconnected).
    pub fn wake_all(&self) {
        let senders: Vec<_> = {
            let runs = self.runs.lock().expect("run signals lock");
            runs.values().filter_map(Weak::upgrade).collect()
        };
        for sender in senders {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many runs are watched now.
    pub fn watched(&self) -> usize {
        let runs = self.runs.lock().expect("run signals lock");
        runs.values().filter(|s| s.strong_count() > 0).count()
    }
}

impl RunWatch {
    /// Returns once the run was saved since the watch began or since this last returned.
    pub async fn saved(&mut self) {
        // The sender lives as long as this watch, so this only returns on a change.
        let _ = self.receiver.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_save_wakes_the_watchers_of_its_run_only() {
        let signals = RunSignals::default();
        let mut one = signals.watch("run_1");
        let mut also_one = signals.watch("run_1");
        let mut two = signals.watch("run_2");
        signals.saved("run_1");
        tokio::time::timeout(Duration::from_secs(1), one.saved())
            .await
            .expect("woken");
        tokio::time::timeout(Duration::from_secs(1), also_one.saved())
            .await
            .expect("woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), two.saved())
                .await
                .is_err()
        );
        // A save before the wait is not lost.
        signals.saved("run_2");
        tokio::time::timeout(Duration::from_secs(1), two.saved())
            .await
            .expect("woken");
        signals.wake_all();
        tokio::time::timeout(Duration::from_secs(1), one.saved())
            .await
            .expect("woken");
    }

    #[test]
    fn entries_go_with_their_watchers() {
        let signals = RunSignals::default();
        let watches: Vec<_> = (0..200)
            .map(|i| signals.watch(&format!("run_{i}")))
            .collect();
        assert_eq!(signals.watched(), 200);
        drop(watches);
        assert_eq!(signals.watched(), 0);
        // Saving an unwatched run does nothing.
        signals.saved("run_3");
        for i in 0..200 {
            drop(signals.watch(&format!("again_{i}")));
        }
        assert!(signals.runs.lock().unwrap().len() < 300);
    }
}
