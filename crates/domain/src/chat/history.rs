//! The conversation before a chat run, as an agent reads it: the thread's newest items
//! that fit the agent's model's context budget, read newest first a page at a time, and
//! kept per thread in this process ([`HistoryCache`]) so the next turn reads only what
//! was added since.
//!
//! Invariants:
//! - The cache holds, per thread, the messages before some item (`newest`) as far back as
//!   a budget (`covered`) went. A turn reads the items after `newest` up to its own first
//!   item; it must meet that item on the way, or the cache is dropped and the thread read
//!   again (a retry deleted `newest`). Items are appended to a thread by any replica; the
//!   text of a message is not changed once its run is over, so what the cache holds
//!   stays true.
//! - A turn whose budget is larger than what the cache covers, when the cache was cut,
//!   reads the thread again.
//! - The cache holds at most [`CACHE_BYTES`] of text; the threads used least recently go
//!   first.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
};

use conversation::{ItemBody, Order, ThreadItem};
use serde_json::Value;

use crate::{
    Services,
    chat::PageRequest,
    runs::{AttachmentRef, HistoryEntry},
    store::StoreResult,
};

/// Items read per page, newest first.
const PAGE: i64 = 50;

/// Roughly how many tokens a text takes (four characters a token, as for English and
/// French prose; an estimate, so budgets keep a margin).
pub(crate) fn estimated_tokens(text: &str) -> i64 {
    i64::try_from(text.len() / 4).unwrap_or(i64::MAX) + 4
}

/// What a message of the history costs against a budget: its text, and a page of text
/// for each file.
pub(crate) fn entry_tokens(entry: &HistoryEntry) -> i64 {
    estimated_tokens(&entry.text)
        .saturating_add(1_000 * i64::try_from(entry.attachments.len()).unwrap_or(i64::MAX))
}

/// The attachments of a stored user message, as the engine names them.
pub(crate) fn attachment_refs(attachments: &[Value]) -> Vec<AttachmentRef> {
    attachments
        .iter()
        .filter_map(|a| {
            Some(AttachmentRef {
                id: a.get("id")?.as_str()?.to_string(),
                name: a.get("name")?.as_str()?.to_string(),
                mime_type: a.get("mime_type")?.as_str()?.to_string(),
            })
        })
        .collect()
}

/// A thread's item as a message of the history, when it is one: user and assistant
/// messages, hidden context, answered questions.
fn entry_of(item: &ThreadItem) -> Option<HistoryEntry> {
    let mut files = Vec::new();
    let (role, text) = match &item.body {
        ItemBody::UserMessage {
            content,
            attachments,
            ..
        } => {
            files = attachment_refs(attachments);
            ("user", conversation::text_of(content))
        }
        ItemBody::AssistantMessage { content } => (
            "assistant",
            content
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ItemBody::SdkHiddenContext { content } => ("user", content.clone()),
        ItemBody::StructuredInput { status, inputs } if status != "pending" => (
            "user",
            crate::workflows::nodes::wait_for_user_input::answers_text(inputs),
        ),
        _ => return None,
    };
    Some(HistoryEntry {
        role: role.into(),
        text,
        attachments: files,
    })
}

/// How many bytes of message text the cache of one process holds at most.
pub const CACHE_BYTES: usize = 16 << 20;

/// A thread's messages as far as a budget went, oldest first.
struct Cached {
    /// Each message with its cost.
    entries: VecDeque<(HistoryEntry, i64)>,
    /// The thread's newest item read (a message or not); `None`: the thread was empty.
    newest: Option<String>,
    /// The budget the front was cut at, when it was.
    cut_at: Option<i64>,
    bytes: usize,
    last_used: u64,
}

fn entry_bytes(entry: &HistoryEntry) -> usize {
    entry.text.len() + 64
}

impl Cached {
    /// Drops the oldest messages beyond `budget`, keeping at least one.
    fn trim(&mut self, budget: i64) {
        let mut tokens: i64 = self.entries.iter().map(|(_, cost)| cost).sum();
        while tokens > budget && self.entries.len() > 1 {
            let (entry, cost) = self.entries.pop_front().expect("more than one");
            tokens -= cost;
            self.bytes -= entry_bytes(&entry);
            self.cut_at = Some(self.cut_at.map_or(budget, |at| at.min(budget)));
        }
    }

    /// The newest messages that fit `budget`, oldest first, and whether any were left out.
    fn window(&self, budget: i64) -> (Vec<HistoryEntry>, bool) {
        let mut room = budget;
        let mut taken = Vec::new();
        let mut cut = false;
        for (entry, cost) in self.entries.iter().rev() {
            if *cost > room && !taken.is_empty() {
                cut = true;
                break;
            }
            room -= cost;
            taken.push(entry.clone());
        }
        taken.reverse();
        let older_left_out = self.cut_at.is_some() && taken.len() == self.entries.len();
        (taken, cut || older_left_out)
    }
}

/// The history of the threads this process answered last, so a turn reads only what
/// its thread gained since (see the module's invariants).
#[derive(Default)]
pub struct HistoryCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    threads: HashMap<String, Cached>,
    /// Threads by when they were last used (`Cached::last_used`), oldest first.
    by_use: BTreeMap<u64, String>,
    bytes: usize,
    clock: u64,
}

/// What a thread's entry costs besides its messages: its id twice, the map slots.
const ENTRY_OVERHEAD: usize = 256;

/// The bytes a thread's entry holds.
fn held(thread_id: &str, cached: &Cached) -> usize {
    cached.bytes + ENTRY_OVERHEAD + 2 * thread_id.len()
}

impl HistoryCache {
    fn take(&self, thread_id: &str) -> Option<Cached> {
        let mut inner = self.inner.lock().unwrap();
        let cached = inner.threads.remove(thread_id)?;
        inner.by_use.remove(&cached.last_used);
        inner.bytes -= held(thread_id, &cached);
        Some(cached)
    }

    fn put(&self, thread_id: &str, mut cached: Cached) {
        // An empty history costs a read of nothing: not worth a place. One too large
        // for its share is read again each time.
        if cached.entries.is_empty() || cached.bytes > CACHE_BYTES / 8 {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.clock += 1;
        cached.last_used = inner.clock;
        inner.bytes += held(thread_id, &cached);
        let clock = inner.clock;
        inner.by_use.insert(clock, thread_id.to_string());
        if let Some(old) = inner.threads.insert(thread_id.to_string(), cached) {
            inner.bytes -= held(thread_id, &old);
            inner.by_use.remove(&old.last_used);
        }
        while inner.bytes > CACHE_BYTES {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = inner.threads.remove(&oldest) {
                inner.bytes -= held(&oldest, &gone);
            }
        }
    }

    /// How many threads and bytes the cache holds.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.threads.len(), inner.bytes)
    }

    /// Forgets a thread (deleted, or its items rewritten).
    pub fn forget(&self, thread_id: &str) {
        self.take(thread_id);
    }
}

/// The newest messages of a thread before `before` (the whole thread when `None`) that
/// fit `budget` tokens, oldest first: whole messages, the newest always; and whether
/// older ones were left out. What the thread gained since this process last read it is
/// read alone (the cache); otherwise the thread is read a page at a time, newest first,
/// until the budget is spent, so a long thread costs what a full budget does.
pub(crate) async fn read(
    services: &Services,
    thread_id: &str,
    before: Option<&str>,
    budget: i64,
) -> StoreResult<(Vec<HistoryEntry>, bool)> {
    let Some(before) = before else {
        let (entries, cut, _) = read_back(services, thread_id, None, budget).await?;
        return Ok((entries, cut));
    };
    if let Some(mut cached) = services.history_cache.take(thread_id)
        && cached.cut_at.is_none_or(|at| budget <= at)
        && catch_up(services, thread_id, before, &mut cached).await?
    {
        cached.trim(budget.max(cached.cut_at.unwrap_or(0)));
        let window = cached.window(budget);
        services.history_cache.put(thread_id, cached);
        return Ok(window);
    }
    let (entries, cut, newest) = read_back(services, thread_id, Some(before), budget).await?;
    let cached = Cached {
        bytes: entries.iter().map(entry_bytes).sum(),
        entries: entries
            .iter()
            .map(|e| (e.clone(), entry_tokens(e)))
            .collect(),
        newest,
        cut_at: cut.then_some(budget),
        last_used: 0,
    };
    services.history_cache.put(thread_id, cached);
    Ok((entries, cut))
}

/// Adds to `cached` the messages after its newest item up to `before`; `false` when
/// `before` was not met (the cache no longer matches the thread).
async fn catch_up(
    services: &Services,
    thread_id: &str,
    before: &str,
    cached: &mut Cached,
) -> StoreResult<bool> {
    let mut after = cached.newest.clone();
    loop {
        let (items, more) = services
            .store
            .list_chat_items(
                thread_id,
                &PageRequest {
                    limit: PAGE,
                    order: Order::Asc,
                    after: after.clone(),
                },
                true,
            )
            .await?;
        for item in &items {
            if item.id == before {
                return Ok(true);
            }
            cached.newest = Some(item.id.clone());
            if let Some(entry) = entry_of(item) {
                cached.bytes += entry_bytes(&entry);
                let cost = entry_tokens(&entry);
                cached.entries.push_back((entry, cost));
            }
        }
        match items.last() {
            Some(last) if more => after = Some(last.id.clone()),
            _ => return Ok(false),
        }
    }
}

/// [`read`] without the cache: pages newest first from `before`; also returns the newest
/// item read.
async fn read_back(
    services: &Services,
    thread_id: &str,
    before: Option<&str>,
    budget: i64,
) -> StoreResult<(Vec<HistoryEntry>, bool, Option<String>)> {
    let mut newest = None;
    let mut entries = Vec::new();
    let mut room = budget;
    let mut after = before.map(str::to_string);
    let mut cut = false;
    'pages: loop {
        let (items, more) = services
            .store
            .list_chat_items(
                thread_id,
                &PageRequest {
                    limit: PAGE,
                    order: Order::Desc,
                    after: after.clone(),
                },
                true,
            )
            .await?;
        if newest.is_none() {
            newest = items.first().map(|item| item.id.clone());
        }
        for item in &items {
            let Some(entry) = entry_of(item) else {
                continue;
            };
            let cost = entry_tokens(&entry);
            if cost > room && !entries.is_empty() {
                cut = true;
                break 'pages;
            }
            room -= cost;
            entries.push(entry);
        }
        match items.last() {
            Some(last) if more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    entries.reverse();
    Ok((entries, cut, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(text_bytes: usize) -> Cached {
        let entry = HistoryEntry {
            role: "user".into(),
            text: "x".repeat(text_bytes),
            attachments: Vec::new(),
        };
        Cached {
            bytes: entry_bytes(&entry),
            entries: VecDeque::from([(entry, 10)]),
            newest: Some("msg_1".into()),
            cut_at: None,
            last_used: 0,
        }
    }

    #[test]
    fn the_cache_keeps_its_bytes_and_drops_the_least_recently_used() {
        let cache = HistoryCache::default();
        cache.put(
            "empty",
            Cached {
                entries: VecDeque::new(),
                ..cached(0)
            },
        );
        assert_eq!(cache.size(), (0, 0), "an empty history takes no place");

        // Taking and putting back a thread many times holds the same bytes.
        cache.put("thr_a", cached(1_000));
        let (_, once) = cache.size();
        for _ in 0..100 {
            let back = cache.take("thr_a").unwrap();
            cache.put("thr_a", back);
        }
        assert_eq!(cache.size(), (1, once));

        // Past its size, the threads used least recently go first.
        let share = CACHE_BYTES / 16;
        for i in 0..20 {
            cache.put(&format!("thr_{i}"), cached(share));
            if i == 10 {
                // thr_0 is used again: it stays.
                let back = cache.take("thr_0").unwrap();
                cache.put("thr_0", back);
            }
        }
        let (threads, bytes) = cache.size();
        assert!(bytes <= CACHE_BYTES, "{bytes}");
        assert!(threads < 20, "{threads}");
        assert!(cache.take("thr_0").is_some(), "used recently");
        assert!(cache.take("thr_1").is_none(), "used least recently");
        assert!(cache.take("thr_19").is_some(), "the newest");
        // Too large for its share: not kept.
        cache.put("huge", cached(CACHE_BYTES / 4));
        assert!(cache.take("huge").is_none());
    }
}
