//! Short-lived caches of hot rows that change rarely: users and keys behind a bearer
//! token, settings, workflows with their production version, the model registry.
//!
//! Invariants:
//! - Every write through this `Db` clears the caches it could make stale, so within a
//!   process a read always sees the writes made before it.
//! - A value read from the database is kept only if no clearing happened while it was
//!   read (a generation count), so a slow reader cannot put back what a writer replaced.
//! - Writes made by other processes (replicas) are seen after at most the time to live
//!   (`database.cache_ttl_ms`, 1 s by default; 0 turns caching off).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use domain::{
    auth::api_keys::ApiKey,
    chat::sessions::ChatSession,
    models::{Model, Provider},
    store::StoreResult,
    users::User,
    workflows::{Version, Workflow},
};

/// Entries a cache holds before it starts over (a bound, not an expected size).
const MAX_ENTRIES: usize = 4096;

pub(crate) struct Ttl<K, V> {
    ttl: Duration,
    generation: AtomicU64,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Ttl<K, V> {
    fn new(ttl: Duration) -> Self {
        Ttl {
            ttl,
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, or the one `load` reads (kept when nothing was cleared meanwhile).
    pub(crate) async fn get_or<F>(&self, key: K, load: F) -> StoreResult<V>
    where
        F: Future<Output = StoreResult<V>>,
    {
        if self.ttl.is_zero() {
            return load.await;
        }
        if let Some((at, value)) = self.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let value = load.await?;
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), value.clone()));
        }
        Ok(value)
    }

    /// Forgets everything (after a write).
    pub(crate) fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// What a cached workflow was looked up by: an id and the ChatKit default are keys of
/// different kinds, so no id (not even 0) can read or fill the default's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WorkflowKey {
    Id(i64),
    ChatkitDefault,
}

pub(crate) struct Caches {
    pub(crate) users: Ttl<i64, Option<User>>,
    pub(crate) api_keys: Ttl<String, Option<ApiKey>>,
    pub(crate) sessions: Ttl<String, Option<ChatSession>>,
    pub(crate) settings: Ttl<String, Option<serde_json::Value>>,
    /// Workflows by id and the ChatKit default, and production versions by workflow.
    pub(crate) workflows: Ttl<WorkflowKey, Option<Workflow>>,
    pub(crate) production: Ttl<i64, Option<Version>>,
    pub(crate) models: Ttl<(Option<i64>, bool), Vec<Model>>,
    pub(crate) providers: Ttl<i64, Option<Provider>>,
}

impl Caches {
    pub(crate) fn new(ttl: Duration) -> Self {
        Caches {
            users: Ttl::new(ttl),
            api_keys: Ttl::new(ttl),
            sessions: Ttl::new(ttl),
            settings: Ttl::new(ttl),
            workflows: Ttl::new(ttl),
            production: Ttl::new(ttl),
            models: Ttl::new(ttl),
            providers: Ttl::new(ttl),
        }
    }

    /// After a write to workflows, their versions or shares.
    pub(crate) fn workflows_changed(&self) {
        self.workflows.clear();
        self.production.clear();
    }

    /// After a write to providers or models.
    pub(crate) fn models_changed(&self) {
        self.models.clear();
        self.providers.clear();
    }

    /// Runs `clear` now, so the write's own reads see the database, and again when the
    /// returned guard drops at the end of the write, once its change is committed.
    pub(crate) fn after(&self, clear: fn(&Caches)) -> Cleared<'_> {
        clear(self);
        Cleared(self, clear)
    }

    /// After a write whose effects reach across tables (a user deleted).
    pub(crate) fn clear_all(&self) {
        self.users.clear();
        self.api_keys.clear();
        self.sessions.clear();
        self.settings.clear();
        self.workflows_changed();
        self.models_changed();
    }
}

/// Clears caches when dropped; see [`Caches::after`].
pub(crate) struct Cleared<'a>(&'a Caches, fn(&Caches));

impl Drop for Cleared<'_> {
    fn drop(&mut self) {
        (self.1)(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_kept_until_cleared_or_stale() {
        let cache: Ttl<i64, i64> = Ttl::new(Duration::from_secs(60));
        assert_eq!(cache.get_or(1, async { Ok(10) }).await.unwrap(), 10);
        assert_eq!(cache.get_or(1, async { Ok(11) }).await.unwrap(), 10);
        cache.clear();
        assert_eq!(cache.get_or(1, async { Ok(12) }).await.unwrap(), 12);

        let stale: Ttl<i64, i64> = Ttl::new(Duration::from_millis(1));
        stale.get_or(1, async { Ok(1) }).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(stale.get_or(1, async { Ok(2) }).await.unwrap(), 2);

        let off: Ttl<i64, i64> = Ttl::new(Duration::ZERO);
        off.get_or(1, async { Ok(1) }).await.unwrap();
        assert_eq!(off.get_or(1, async { Ok(2) }).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache: Ttl<i64, i64> = Ttl::new(Duration::from_secs(60));
        let read = cache.get_or(1, async {
            // A writer clears while this read is in flight.
            cache.clear();
            Ok(1)
        });
        assert_eq!(read.await.unwrap(), 1);
        assert_eq!(cache.get_or(1, async { Ok(2) }).await.unwrap(), 2);
    }
}
