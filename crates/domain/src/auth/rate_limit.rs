//! A sliding-window counter of failed logins, per account and per client address.
//!
//! State is per process. Behind several replicas each replica counts on its own, so the
//! effective limit is the configured one times the number of replicas; still a hard stop
//! for brute force, and needing no shared store.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Counts events per key within a sliding window and refuses once `max` is reached.
pub struct SlidingWindow {
    max: u32,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Above this many tracked keys, expired ones are swept on the next write.
const SWEEP_THRESHOLD: usize = 10_000;

impl SlidingWindow {
    pub fn new(max: u32, window: Duration) -> SlidingWindow {
        SlidingWindow {
            max,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `key` already has `max` events in the window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut events = self.events.lock().expect("rate limiter lock poisoned");
        let Some(queue) = events.get_mut(key) else {
            return Ok(());
        };
        Self::expire(queue, now, self.window);
        if queue.len() < self.max as usize {
            return Ok(());
        }
        let oldest = *queue.front().expect("a full queue is not empty");
        let retry_after = (oldest + self.window).saturating_duration_since(now);
        Err(retry_after.max(Duration::from_secs(1)))
    }

    pub fn record(&self, key: &str, now: Instant) {
        let mut events = self.events.lock().expect("rate limiter lock poisoned");
        if events.len() > SWEEP_THRESHOLD {
            let window = self.window;
            events.retain(|_, queue| {
                Self::expire(queue, now, window);
                !queue.is_empty()
            });
        }
        let queue = events.entry(key.to_string()).or_default();
        Self::expire(queue, now, self.window);
        queue.push_back(now);
    }

    pub fn reset(&self, key: &str) {
        self.events
            .lock()
            .expect("rate limiter lock poisoned")
            .remove(key);
    }

    fn expire(queue: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while queue
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_then_recovers() {
        let limiter = SlidingWindow::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.record("k", t0);
        assert!(limiter.check("k", t0).is_ok());
        limiter.record("k", t0 + Duration::from_secs(10));
        let retry = limiter
            .check("k", t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(retry, Duration::from_secs(40));
        assert!(limiter.check("other", t0).is_ok());
        assert!(limiter.check("k", t0 + Duration::from_secs(61)).is_ok());
        limiter.reset("k");
        assert!(limiter.check("k", t0 + Duration::from_secs(20)).is_ok());
    }
}
