//! Workflows: graphs of nodes, their versions, publishing, sharing, validation, import and export.
//!
//! Invariants:
//! - A version that was ever published is immutable; editing it makes a new draft.
//! - At most one version per workflow is in production, and at most one workflow is the
//!   ChatKit default (both enforced by unique indexes, not only by this code).
//! - Every save, import and publish validates the graph; errors refuse the write.

pub mod diff;
pub mod eval;
pub mod expr;
pub mod graph;
pub mod import;
pub mod nodes;
pub mod problems;
pub mod references;
pub mod schema;
mod seed_dialect;
mod service;
pub mod validate;

use chrono::{DateTime, Utc};

pub use graph::{Edge, Graph, GraphIndex, Node};
pub use problems::{Problem, Severity};
pub use service::*;

use crate::{
    error::{DomainError, ErrorKind},
    store::StoreError,
};

/// A workflow: a named, owned series of versions, one of which may be in production.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub id: i64,
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    /// `None` for system workflows (such as the default one).
    pub owner_id: Option<i64>,
    pub is_chatkit_default: bool,
    /// Move running conversations to a newly published version at their next turn.
    pub follow_production: bool,
    pub production_version_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One version of a workflow's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: i64,
    pub workflow_id: i64,
    /// 1, 2, 3… per workflow.
    pub number: i64,
    pub name: Option<String>,
    pub graph: Graph,
    /// Incremented by every edit; the `ETag` of the version.
    pub revision: i64,
    pub is_production: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub published_by: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_by: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

impl Version {
    /// Published versions never change.
    pub fn is_published(&self) -> bool {
        self.published_at.is_some()
    }
}

/// What a share grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        match text {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            _ => None,
        }
    }
}

/// A user's effective rights on a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Runs its production version without seeing the graph: the ChatKit default for
    /// every signed-in user, a thread's workflow for the thread's owner (see
    /// [`runnable`](crate::workflows::runnable)). [`access`](crate::workflows::access)
    /// never answers it.
    Served,
    Read,
    Write,
    Owner,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Served => "served",
            Access::Read => "read",
            Access::Write => "write",
            Access::Owner => "owner",
            Access::Admin => "admin",
        }
    }

    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Owner | Access::Admin)
    }

    /// Whether the graph and versions may be read.
    pub fn can_read(self) -> bool {
        !matches!(self, Access::Served)
    }

    /// Deleting and sharing belong to the owner (and administrators).
    pub fn can_manage(self) -> bool {
        matches!(self, Access::Owner | Access::Admin)
    }
}

/// A user a workflow is shared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub user_id: i64,
    pub email: String,
    pub permission: Permission,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow {0} not found")]
    NotFound(i64),
    #[error("version {0} of this workflow not found")]
    VersionNotFound(i64),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the workflow graph has {} error(s)", .0.iter().filter(|p| p.severity == Severity::Error).count())]
    Invalid(Vec<Problem>),
    #[error("the slug `{0}` is already used by another workflow")]
    SlugTaken(String),
    #[error(
        "invalid slug `{0}`: use lower-case letters, digits, `-` and `_` (at most 128 characters)"
    )]
    InvalidSlug(String),
    #[error("{0}")]
    InvalidField(String),
    #[error(
        "the version changed since you loaded it (now at revision {current}); reload and reapply your edit"
    )]
    Stale { current: i64 },
    #[error("workflow {0} has no published version")]
    NotPublished(i64),
    #[error("user {0} not found")]
    UserNotFound(i64),
    #[error("no user has that email")]
    ShareTargetNotFound,
    #[error("cannot import: {0}")]
    InvalidImport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for WorkflowError {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkflowError::NotFound(_)
            | WorkflowError::VersionNotFound(_)
            | WorkflowError::UserNotFound(_)
            | WorkflowError::ShareTargetNotFound => ErrorKind::NotFound,
            WorkflowError::Forbidden(_) => ErrorKind::Forbidden,
            WorkflowError::Invalid(_)
            | WorkflowError::InvalidSlug(_)
            | WorkflowError::InvalidField(_)
            | WorkflowError::InvalidImport(_) => ErrorKind::Invalid,
            WorkflowError::SlugTaken(_)
            | WorkflowError::Stale { .. }
            | WorkflowError::NotPublished(_) => ErrorKind::Conflict,
            WorkflowError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            WorkflowError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WorkflowError::NotFound(_) => "workflow_not_found",
            WorkflowError::VersionNotFound(_) => "version_not_found",
            WorkflowError::Forbidden(_) => "workflow_forbidden",
            WorkflowError::Invalid(_) => "invalid_workflow",
            WorkflowError::SlugTaken(_) => "slug_taken",
            WorkflowError::InvalidSlug(_) => "invalid_slug",
            WorkflowError::InvalidField(_) => "invalid_field",
            WorkflowError::Stale { .. } => "stale_version",
            WorkflowError::NotPublished(_) => "workflow_not_published",
            WorkflowError::UserNotFound(_) | WorkflowError::ShareTargetNotFound => "user_not_found",
            WorkflowError::InvalidImport(_) => "invalid_import",
            WorkflowError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            WorkflowError::Store(_) => "internal_error",
        }
    }
}

pub type WorkflowResult<T> = Result<T, WorkflowError>;
