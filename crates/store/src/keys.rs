//! `KeyStore` on both backends: API keys and embedded ChatKit sessions (secrets as
//! hashes only).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    auth::api_keys::{ApiKey, NewApiKey},
    chat::sessions::ChatSession,
    store::{KeyStore, StoreResult},
};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Db, store_error, stored_time, with_pool, with_writer};

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: i64,
    user_id: i64,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKey {
    fn from(row: KeyRow) -> ApiKey {
        ApiKey {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

macro_rules! key_columns {
    () => {
        "id, user_id, name, prefix, created_at, last_used_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    created_by: i64,
    workflow_id: i64,
    version_id: Option<i64>,
    end_user: String,
    state_variables: Option<Json<Value>>,
    max_requests_per_minute: Option<i64>,
    expires_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<SessionRow> for ChatSession {
    fn from(row: SessionRow) -> ChatSession {
        ChatSession {
            id: row.id,
            created_by: row.created_by,
            workflow_id: row.workflow_id,
            version_id: row.version_id,
            end_user: row.end_user,
            state_variables: row.state_variables.map(|s| s.0),
            max_requests_per_minute: row.max_requests_per_minute,
            expires_at: row.expires_at,
            cancelled_at: row.cancelled_at,
            created_at: row.created_at,
        }
    }
}

macro_rules! session_columns {
    () => {
        "id, created_by, workflow_id, version_id, end_user, state_variables, max_requests_per_minute, expires_at, cancelled_at, created_at"
    };
}

impl Db {
    /// The session a one-parameter query finds.
    async fn one_session(&self, sql: &'static str, key: &str) -> StoreResult<Option<ChatSession>> {
        let row: Option<SessionRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(key).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }
}

/// An API key by its hash (each request with a key, behind the cache): its unique key.
pub(crate) const API_KEY_BY_HASH: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE key_hash = $1"
);

/// A session by its id: the primary key.
pub(crate) const SESSION_BY_ID: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM chat_sessions WHERE id = $1"
);

/// A session by its secret's hash (each request of an embedded chat, behind the cache):
/// its unique key.
pub(crate) const SESSION_BY_HASH: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM chat_sessions WHERE secret_hash = $1"
);

#[async_trait]
impl KeyStore for Db {
    async fn insert_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKey> {
        let _cleared = self.caches.after(|c| c.api_keys.clear());
        let sql = concat!(
            "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING ",
            key_columns!()
        );
        let row: KeyRow = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(key.user_id)
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.key_hash)
                .bind(stored_time(now))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.into())
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY id");
        let rows: Vec<KeyRow> = with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
            .map_err(store_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        self.caches
            .api_keys
            .get_or(hash.to_string(), async {
                let row: Option<KeyRow> = with_pool!(self, pool => {
                    sqlx::query_as(API_KEY_BY_HASH).bind(hash).fetch_optional(pool).await
                })
                .map_err(store_error)?;
                Ok(row.map(Into::into))
            })
            .await
    }

    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let _cleared = self.caches.after(|c| c.api_keys.clear());
        let done = with_writer!(self, pool => {
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(stored_time(now))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn touch_api_key(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        let _cleared = self.caches.after(|c| c.api_keys.clear());
        with_writer!(self, pool => {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(stored_time(now))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn insert_chat_session(
        &self,
        session: &ChatSession,
        secret_hash: &str,
    ) -> StoreResult<()> {
        let _cleared = self.caches.after(|c| c.sessions.clear());
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO chat_sessions (id, secret_hash, created_by, workflow_id, version_id, end_user, state_variables,
                    max_requests_per_minute, expires_at, cancelled_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&session.id)
            .bind(secret_hash)
            .bind(session.created_by)
            .bind(session.workflow_id)
            .bind(session.version_id)
            .bind(&session.end_user)
            .bind(session.state_variables.as_ref().map(Json))
            .bind(session.max_requests_per_minute)
            .bind(stored_time(session.expires_at))
            .bind(session.cancelled_at.map(stored_time))
            .bind(stored_time(session.created_at))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn chat_session(&self, id: &str) -> StoreResult<Option<ChatSession>> {
        self.one_session(SESSION_BY_ID, id).await
    }

    async fn chat_session_by_hash(&self, hash: &str) -> StoreResult<Option<ChatSession>> {
        self.caches
            .sessions
            .get_or(hash.to_string(), async {
                self.one_session(SESSION_BY_HASH, hash).await
            })
            .await
    }

    async fn cancel_chat_session(&self, id: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let _cleared = self.caches.after(|c| c.sessions.clear());
        with_writer!(self, pool => {
            sqlx::query("UPDATE chat_sessions SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL")
                .bind(id)
                .bind(stored_time(now))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)
    }
}
