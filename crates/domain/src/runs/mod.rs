//! Workflow runs: a published (or chosen) version executed for a caller, durably.
//!
//! Invariants:
//! - Run state lives in the database, never only in memory: the current node, `state`,
//!   the conversation history, loop counters, the wait of a paused run, and an append-only
//!   event log with a per-run sequence. A paused run resumes in any process.
//! - Steps are saved in batches with their records and events, each batch in one
//!   transaction guarded by the run's event sequence, so two processes can never advance
//!   one run twice (see ARCHITECTURE.md for when a batch is written).
//! - A run ends `completed`, `failed` (with the node and the reason) or `cancelled`; the
//!   step limit turns endless loops into a clear failure.

pub(crate) mod agent;
mod answer;
pub(crate) mod compose;
mod control;
mod engine;
mod event;
pub mod follow;
pub(crate) mod knowledge;
pub mod leases;
pub mod live;
pub(crate) mod mcp_step;
mod partial_json;
pub mod signals;
pub(crate) mod step;
mod trial;
pub(crate) mod values;
pub(crate) mod widget;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use answer::*;
pub use control::*;
pub use engine::*;
pub use event::{EventKind, WaitKind};
pub use trial::{Trial, Tried, try_node};
pub use widget::action_types as widget_action_types;
pub(crate) use widget::bind as bind_widget;

use crate::{
    error::{DomainError, ErrorKind},
    store::StoreError,
    workflows::WorkflowError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// What a paused run waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub kind: WaitKind,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// What the client needs to answer: the widget shown, or the tool call to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFailure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub code: String,
    pub message: String,
}

/// A run this process advances, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLease {
    pub run_id: String,
    /// The answer being streamed, not saved yet: `{node, text, after_seq}`, where
    /// `after_seq` is the last event number published before it.
    pub partial: Option<Value>,
}

/// A run whose lease ran out (its process stopped), now failed as `interrupted`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredRun {
    pub run_id: String,
    pub thread_id: Option<String>,
    pub user_id: Option<i64>,
    /// The text it was streaming when its process stopped, when its last heartbeat had
    /// one newer than its last save.
    pub partial: Option<PartialAnswer>,
}

/// What an interrupted run had streamed of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialAnswer {
    pub node: String,
    pub text: String,
}

/// A message of the conversation the run's agents see.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// `user` or `assistant`.
    pub role: String,
    pub text: String,
    /// Files sent with the message (chat attachments), given to the model with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
}

/// A chat attachment a message carries; its bytes are in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub id: String,
    pub name: String,
    pub mime_type: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub workflow_id: i64,
    pub version_id: i64,
    pub user_id: Option<i64>,
    pub thread_id: Option<String>,
    pub status: RunStatus,
    pub current_node: Option<String>,
    pub input: Value,
    pub state: Value,
    /// The previous step's output: the next step's `input`.
    pub last_output: Value,
    /// The conversation this run added to (its input, its answers), after what its
    /// thread held before it.
    pub history: Vec<HistoryEntry>,
    /// In a chat thread (`thread_id`): the run's first item there. The thread's messages
    /// before it come before `history`; an agent that reads the conversation reads them
    /// from the thread, as far as its model's context budget goes (`chat::history`), so
    /// a run never copies its thread.
    pub history_before: Option<String>,
    /// Engine bookkeeping: loop counters.
    pub scratch: Value,
    pub wait: Option<Wait>,
    pub output: Option<Value>,
    pub error: Option<RunFailure>,
    pub step_count: i64,
    /// The sequence number of the last event.
    pub event_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The record of one executed node.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub seq: i64,
    pub node: String,
    pub kind: String,
    /// `ok`, `waiting` or `failed`.
    pub status: String,
    pub input: Value,
    pub output: Value,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

/// One entry of a run's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub kind: EventKind,
    pub node: Option<String>,
    pub data: Value,
    pub at: DateTime<Utc>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow_id: Option<i64>,
    pub status: Option<RunStatus>,
    /// Only this user's runs.
    pub user_id: Option<i64>,
    /// Started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Started before this time.
    pub to: Option<DateTime<Utc>>,
    pub thread_id: Option<String>,
    pub limit: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// The run was cancelled while this process advanced it.
    #[error("the run was cancelled")]
    Cancelled,
    #[error("{0}")]
    Forbidden(String),
    /// A bug: the run was failed with `engine_error`.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for RunError {
    fn kind(&self) -> ErrorKind {
        match self {
            RunError::NotFound(_) => ErrorKind::NotFound,
            RunError::Invalid(_) => ErrorKind::Invalid,
            RunError::Conflict(_) | RunError::Cancelled => ErrorKind::Conflict,
            RunError::Forbidden(_) => ErrorKind::Forbidden,
            RunError::Internal(_) => ErrorKind::Internal,
            RunError::Workflow(err) => err.kind(),
            RunError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            RunError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RunError::NotFound(_) => "run_not_found",
            RunError::Invalid(_) => "invalid_run_request",
            RunError::Conflict(_) => "run_conflict",
            RunError::Cancelled => "run_cancelled",
            RunError::Forbidden(_) => "run_forbidden",
            RunError::Internal(_) => "engine_error",
            RunError::Workflow(err) => err.code(),
            RunError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            RunError::Store(_) => "internal_error",
        }
    }
}

pub type RunResult<T> = Result<T, RunError>;
