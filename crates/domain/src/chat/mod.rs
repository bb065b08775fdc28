//! Conversations, in no channel's protocol: threads owned by users, their items,
//! feedback, and the turns that run the thread's workflow (`respond`), which yield
//! [`TurnEvent`]s. The ChatKit endpoint (`api::routes::chatkit`) is one adapter of them;
//! voice sessions, phone calls and LTI launches are others.
//!
//! Invariants:
//! - A thread belongs to one user; others get "not found". Administrators may open any
//!   thread, and each such access is logged.
//! - Items are stored whole, as the conversation model's JSON (`crates/conversation`), in creation order; hidden items
//!   (`hidden_context_item`, `sdk_hidden_context`) are stored for the model and never
//!   returned to a client.
//! - A thread is bound to one workflow when it is created; its runs carry the thread id,
//!   so the engine's one-unfinished-run-per-thread rule is the thread's busy lock.

pub mod appearance;
pub mod attachments;
mod event;
pub mod history;
pub mod interrupted;
mod respond;
pub mod sessions;

use chrono::{DateTime, Utc};
use conversation::{Order, Page, ThreadItem, ThreadStatus};
use serde_json::{Map, Value};

pub use attachments::{Blobs, ChatSettings, StoredAttachment};
pub use event::TurnEvent;
pub use respond::{Turn, respond};

pub use crate::auth::Principal;
use crate::{
    Services,
    error::{DomainError, ErrorKind},
    store::StoreError,
};

/// Whether a thread is this principal's: its user and end user, and for an embedded
/// session, its workflow.
fn owns(who: &Principal, thread: &ChatThread) -> bool {
    thread.user_id == who.user.id
        && thread.end_user.as_deref() == who.end_user()
        && who
            .session
            .as_ref()
            .is_none_or(|s| thread.workflow_id == Some(s.workflow_id))
}

/// A thread as stored (each channel builds what it sends from it).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatThread {
    pub id: String,
    pub user_id: i64,
    /// The end user of an embedded session the thread belongs to.
    pub end_user: Option<String>,
    pub workflow_id: Option<i64>,
    pub title: Option<String>,
    pub status: ThreadStatus,
    pub allowed_image_domains: Option<Vec<String>>,
    /// Server-side only; never sent.
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which page of a list.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub order: Order,
    /// The id of the last element of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("thread {0} not found")]
    ThreadNotFound(String),
    #[error("item {0} not found")]
    ItemNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("workflow {0} not found")]
    WorkflowNotFound(i64),
    #[error("{0}")]
    Forbidden(String),
    #[error("attachment {0} was uploaded already")]
    AlreadyUploaded(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("no workflow serves this chat: publish one and choose it as the ChatKit default")]
    NoWorkflow,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for ChatError {
    fn kind(&self) -> ErrorKind {
        match self {
            ChatError::ThreadNotFound(_)
            | ChatError::ItemNotFound(_)
            | ChatError::WorkflowNotFound(_) => ErrorKind::NotFound,
            ChatError::Forbidden(_) => ErrorKind::Forbidden,
            ChatError::Invalid(_) => ErrorKind::Invalid,
            ChatError::TooLarge(_) => ErrorKind::TooLarge,
            ChatError::Conflict(_) | ChatError::AlreadyUploaded(_) | ChatError::NoWorkflow => {
                ErrorKind::Conflict
            }
            ChatError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            ChatError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ChatError::ThreadNotFound(_) => "thread_not_found",
            ChatError::ItemNotFound(_) => "item_not_found",
            ChatError::WorkflowNotFound(_) => "workflow_not_found",
            ChatError::Forbidden(_) => "forbidden",
            ChatError::Invalid(_) => "invalid_request",
            ChatError::Conflict(_) => "thread_busy",
            ChatError::AlreadyUploaded(_) => "already_uploaded",
            ChatError::TooLarge(_) => "payload_too_large",
            ChatError::NoWorkflow => "no_chat_workflow",
            ChatError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            ChatError::Store(_) => "internal_error",
        }
    }
}

pub type ChatResult<T> = Result<T, ChatError>;

/// The most items or threads one page holds.
const MAX_PAGE: i64 = 100;

/// A new time-ordered id with `prefix` (`thr`, `msg`, `atc`…).
pub fn new_id(prefix: &str) -> String {
    crate::ordered_id(prefix)
}

fn page_of(req: &PageRequest) -> PageRequest {
    PageRequest {
        limit: if req.limit <= 0 {
            20
        } else {
            req.limit.min(MAX_PAGE)
        },
        order: req.order,
        after: req.after.clone(),
    }
}

/// A thread the principal may use: their own; administrators (not sessions) may open any
/// (logged).
pub async fn thread(
    services: &Services,
    who: &Principal,
    thread_id: &str,
) -> ChatResult<ChatThread> {
    let actor = &who.user;
    let thread = services
        .store
        .chat_thread(thread_id)
        .await?
        .ok_or_else(|| ChatError::ThreadNotFound(thread_id.to_string()))?;
    if owns(who, &thread) {
        return Ok(thread);
    }
    if actor.is_admin && who.session.is_none() {
        tracing::info!(
            admin_id = actor.id,
            thread_id,
            owner_id = thread.user_id,
            "an administrator opened another user's thread"
        );
        return Ok(thread);
    }
    Err(ChatError::ThreadNotFound(thread_id.to_string()))
}

/// The actor's threads (with no items), newest first by default.
pub async fn list_threads(
    services: &Services,
    who: &Principal,
    page: &PageRequest,
) -> ChatResult<Page<ChatThread>> {
    let page = page_of(page);
    let (threads, has_more) = services
        .store
        .list_chat_threads(who.user.id, who.end_user(), &page)
        .await?;
    let after = has_more
        .then(|| threads.last().map(|t| t.id.clone()))
        .flatten();
    // A session sees only its workflow's threads.
    let threads = threads.into_iter().filter(|t| owns(who, t)).collect();
    Ok(Page {
        data: threads,
        has_more,
        after,
    })
}

/// A thread's visible items.
pub async fn list_items(
    services: &Services,
    who: &Principal,
    thread_id: &str,
    page: &PageRequest,
) -> ChatResult<Page<ThreadItem>> {
    thread(services, who, thread_id).await?;
    let page = page_of(page);
    let (items, has_more) = services
        .store
        .list_chat_items(thread_id, &page, false)
        .await?;
    let after = has_more
        .then(|| items.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Page {
        data: items,
        has_more,
        after,
    })
}

/// A thread with its first 20 visible items, oldest first.
pub async fn get_with_items(
    services: &Services,
    who: &Principal,
    thread_id: &str,
) -> ChatResult<(ChatThread, Page<ThreadItem>)> {
    let thread = thread(services, who, thread_id).await?;
    let items = list_items(
        services,
        who,
        thread_id,
        &PageRequest {
            limit: 20,
            order: Order::Asc,
            after: None,
        },
    )
    .await?;
    Ok((thread, items))
}

pub async fn rename(
    services: &Services,
    who: &Principal,
    thread_id: &str,
    title: &str,
) -> ChatResult<ChatThread> {
    let mut thread = thread(services, who, thread_id).await?;
    let title = title.trim();
    if title.chars().count() > 256 {
        return Err(ChatError::Invalid(
            "a title is at most 256 characters".into(),
        ));
    }
    thread.title = (!title.is_empty()).then(|| title.to_string());
    thread.updated_at = Utc::now();
    services.store.update_chat_thread(&thread).await?;
    Ok(thread)
}

/// Deletes a thread, its items and its runs' link to it; an unfinished run is cancelled.
pub async fn delete(services: &Services, who: &Principal, thread_id: &str) -> ChatResult<()> {
    let thread = thread(services, who, thread_id).await?;
    if let Some(run) = respond::active_run(services, &thread.id).await? {
        let _ = crate::runs::cancel(services, &who.user, &run.id).await;
    }
    services.store.delete_chat_thread(&thread.id).await?;
    services.history_cache.forget(&thread.id);
    Ok(())
}

/// A user's verdict on an item, with the item's text for context.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub thread_id: String,
    pub item_id: String,
    pub user_id: i64,
    /// `positive` or `negative`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// The item, as stored.
    pub item: Option<ThreadItem>,
}

/// Feedback for administrators, newest first (at most `limit`, up to 500).
pub async fn list_feedback(
    services: &Services,
    actor: &Principal,
    thread_id: Option<&str>,
    limit: i64,
) -> ChatResult<Vec<Feedback>> {
    if !actor.is_admin() {
        return Err(ChatError::Forbidden(
            "only administrators read the feedback".into(),
        ));
    }
    Ok(services
        .store
        .list_chat_feedback(thread_id, limit.clamp(1, 500))
        .await?)
}

/// Records the user's feedback on items of their thread (visible to administrators).
pub async fn feedback(
    services: &Services,
    who: &Principal,
    thread_id: &str,
    item_ids: &[String],
    kind: conversation::FeedbackKind,
) -> ChatResult<()> {
    thread(services, who, thread_id).await?;
    let actor = &who.user;
    if item_ids.len() > 100 {
        return Err(ChatError::Invalid("at most 100 items at once".into()));
    }
    for item_id in item_ids {
        let found = services.store.chat_item(thread_id, item_id).await?;
        if found.is_none() {
            return Err(ChatError::ItemNotFound(item_id.clone()));
        }
        services
            .store
            .put_chat_feedback(thread_id, item_id, actor.id, kind.as_str(), Utc::now())
            .await?;
    }
    Ok(())
}
