//! The storage traits the domain consumes; `store` implements them for SQLite and PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::users::{NewUser, User, UserCredentials, UserPatch};

/// A storage failure, already classified so services can react to it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record not found")]
    NotFound,
    /// A uniqueness or foreign-key constraint refused the write; `constraint` names it.
    #[error("constraint `{constraint}` violated")]
    Conflict { constraint: String },
    /// The database could not be reached or timed out.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The outcome of a write that must never leave the system without an administrator.
#[derive(Debug)]
pub enum Guarded<T> {
    Done(T),
    NotFound,
    /// The write would have removed the last administrator, so nothing was changed.
    LastAdmin,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn insert_user(&self, user: &NewUser, now: DateTime<Utc>) -> StoreResult<User>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<UserCredentials>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn count_users(&self) -> StoreResult<i64>;
    /// Applies `patch`, refusing to demote the last administrator.
    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Guarded<User>>;
    /// Replaces the password hash. `revoke_tokens` also invalidates every token issued so far.
    async fn set_password_hash(
        &self,
        id: i64,
        password_hash: &str,
        revoke_tokens: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Deletes a user, refusing to delete the last administrator.
    async fn delete_user(&self, id: i64) -> StoreResult<Guarded<()>>;
}

/// Small named values the platform keeps for itself (key checks, instance settings).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<serde_json::Value>>;
    async fn put_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Stores `value` unless the key exists; returns whichever value is stored afterwards.
    /// Safe against concurrent callers: all of them get the same value back.
    async fn insert_setting_if_absent(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<serde_json::Value>;
}

/// What the readiness probe checks.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    pub backend: &'static str,
    pub reachable: bool,
    pub migrations_pending: usize,
    pub error: Option<String>,
}

/// Connection pool figures for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

#[async_trait]
pub trait Store: UserStore + SettingsStore + Send + Sync {
    fn backend_name(&self) -> &'static str;
    async fn health(&self) -> StoreHealth;
    fn pool_stats(&self) -> PoolStats;
}
