//! `UserStore` on both backends.
//!
//! The last-administrator rule is enforced inside the writing statement itself, so it holds
//! under concurrency: on SQLite writes are serialised; on PostgreSQL the guarded writes
//! first take a transaction-scoped advisory lock, so two demotions cannot both pass.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    auth::throttle::LoginThrottle,
    store::{Guarded, StoreResult, UserStore},
    users::{NewUser, User, UserCredentials, UserPatch},
};

use crate::{Backend, Db, cache::Caches, store_error, stored_time, with_pool, with_writer};

/// The columns of a `UserRow`, as a literal so queries stay `&'static str`.
macro_rules! columns {
    () => {
        "id, email, display_name, password_hash, is_admin, is_lti, token_version, created_at, updated_at"
    };
}

/// Serialises every write that could remove an administrator (PostgreSQL only).
const PG_ADMIN_LOCK: i64 = 0x5357_5944_4144_4d4e;

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    email: String,
    display_name: Option<String>,
    password_hash: String,
    is_admin: bool,
    is_lti: bool,
    token_version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl UserRow {
    fn into_credentials(self) -> UserCredentials {
        UserCredentials {
            password_hash: self.password_hash,
            user: User {
                id: self.id,
                email: self.email,
                display_name: self.display_name,
                is_admin: self.is_admin,
                is_lti: self.is_lti,
                created_at: self.created_at,
                updated_at: self.updated_at,
                token_version: self.token_version,
            },
        }
    }

    fn into_user(self) -> User {
        self.into_credentials().user
    }
}

macro_rules! throttle_columns {
    () => {
        "email, address, failures, first_failure_at, last_failure_at, blocked_until"
    };
}

#[async_trait]
impl UserStore for Db {
    async fn login_throttles(&self, email: &str, address: &str) -> StoreResult<Vec<LoginThrottle>> {
        self.throttle_rows(email, address).await
    }

    async fn record_login_failure(
        &self,
        email: &str,
        address: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> StoreResult<Vec<LoginThrottle>> {
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                for (email, address) in [(email, address), (email, ""), ("", address)] {
                    sqlx::query(
                        "INSERT INTO login_throttles (email, address, failures, first_failure_at, last_failure_at, blocked_until)
                         VALUES ($1, $2, 1, $3, $3, NULL)
                         ON CONFLICT (email, address) DO UPDATE SET
                           failures = CASE WHEN login_throttles.first_failure_at < $4 THEN 1 ELSE login_throttles.failures + 1 END,
                           first_failure_at = CASE WHEN login_throttles.first_failure_at < $4 THEN $3 ELSE login_throttles.first_failure_at END,
                           last_failure_at = $3",
                    )
                    .bind(email)
                    .bind(address)
                    .bind(stored_time(now))
                    .bind(stored_time(window_start))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "DELETE FROM login_throttles WHERE last_failure_at < $1 AND (blocked_until IS NULL OR blocked_until < $1)",
                )
                .bind(stored_time(window_start))
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await
        })
        .map_err(store_error)?;
        self.throttle_rows(email, address).await
    }

    async fn block_login(
        &self,
        email: &str,
        address: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE login_throttles SET blocked_until = $3 WHERE email = $1 AND address = $2")
                .bind(email)
                .bind(address)
                .bind(stored_time(until))
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)?;
        Ok(())
    }

    async fn clear_login_pair(&self, email: &str, address: &str) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM login_throttles WHERE email = $1 AND address = $2")
                .bind(email)
                .bind(address)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)?;
        Ok(())
    }

    async fn list_login_throttles(&self, since: DateTime<Utc>) -> StoreResult<Vec<LoginThrottle>> {
        let sql = concat!(
            "SELECT ",
            throttle_columns!(),
            " FROM login_throttles WHERE last_failure_at >= $1 OR blocked_until >= $1
              ORDER BY last_failure_at DESC, email, address LIMIT 1000"
        );
        let rows: Vec<ThrottleRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(stored_time(since)).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows.into_iter().map(LoginThrottle::from).collect())
    }

    async fn delete_login_throttles(
        &self,
        email: Option<&str>,
        address: Option<&str>,
    ) -> StoreResult<u64> {
        let deleted = with_writer!(self, pool => {
            match (email, address) {
                (Some(email), Some(address)) => {
                    sqlx::query("DELETE FROM login_throttles WHERE email = $1 AND address = $2")
                        .bind(email)
                        .bind(address)
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected())
                }
                (Some(email), None) => {
                    sqlx::query("DELETE FROM login_throttles WHERE email = $1")
                        .bind(email)
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected())
                }
                (None, Some(address)) => {
                    sqlx::query("DELETE FROM login_throttles WHERE address = $1")
                        .bind(address)
                        .execute(pool)
                        .await
                        .map(|r| r.rows_affected())
                }
                (None, None) => sqlx::query("DELETE FROM login_throttles")
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()),
            }
        })
        .map_err(store_error)?;
        Ok(deleted)
    }

    async fn insert_user(&self, user: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let _cleared = self.caches.after(|c| c.users.clear());
        let now = stored_time(now);
        let sql = concat!(
            "INSERT INTO users (email, display_name, password_hash, is_admin, is_lti, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
            columns!()
        );
        let row: UserRow = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(&user.email)
                .bind(&user.display_name)
                .bind(&user.password_hash)
                .bind(user.is_admin)
                .bind(user.is_lti)
                .bind(now)
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.into_user())
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.caches
            .users
            .get_or(id, async {
                let sql = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
                let row: Option<UserRow> = with_pool!(self, pool => {
                    sqlx::query_as(sql).bind(id).fetch_optional(pool).await
                })
                .map_err(store_error)?;
                Ok(row.map(UserRow::into_user))
            })
            .await
    }

    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<UserCredentials>> {
        let sql = concat!("SELECT ", columns!(), " FROM users WHERE email = $1");
        let row: Option<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(email).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        Ok(row.map(UserRow::into_credentials))
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = concat!("SELECT ", columns!(), " FROM users ORDER BY id");
        let rows: Vec<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows.into_iter().map(UserRow::into_user).collect())
    }

    async fn count_users(&self) -> StoreResult<i64> {
        let (count,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(pool).await
        })
        .map_err(store_error)?;
        Ok(count)
    }

    async fn update_user(
        &self,
        id: i64,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Guarded<User>> {
        let _cleared = self.caches.after(|c| c.users.clear());
        let now = stored_time(now);
        let (set_display_name, display_name) = match &patch.display_name {
            Some(name) => (true, name.clone()),
            None => (false, None),
        };
        // The row is updated unless it would demote the last administrator.
        let sql = concat!(
            "UPDATE users SET
                email = COALESCE($2, email),
                display_name = CASE WHEN $3 THEN $4 ELSE display_name END,
                is_admin = COALESCE($5, is_admin),
                updated_at = $6
             WHERE id = $1
               AND (COALESCE($5, TRUE) OR NOT is_admin
                    OR EXISTS (SELECT 1 FROM users other WHERE other.is_admin AND other.id <> $1))
             RETURNING ",
            columns!()
        );
        let backend = self.backend();
        let row: Option<UserRow> = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                if backend == Backend::Postgres && patch.is_admin == Some(false) {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(PG_ADMIN_LOCK)
                        .execute(&mut *tx)
                        .await?;
                }
                let row = sqlx::query_as(sql)
                    .bind(id)
                    .bind(&patch.email)
                    .bind(set_display_name)
                    .bind(display_name)
                    .bind(patch.is_admin)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(row)
            }
            .await
        })
        .map_err(store_error)?;
        match row {
            Some(row) => Ok(Guarded::Done(row.into_user())),
            None => self.refusal(id).await,
        }
    }

    async fn set_password_hash(
        &self,
        id: i64,
        password_hash: &str,
        revoke_tokens: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _cleared = self.caches.after(|c| c.users.clear());
        let now = stored_time(now);
        let result = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE users SET password_hash = $2, updated_at = $3,
                    token_version = CASE WHEN $4 THEN token_version + 1 ELSE token_version END
                 WHERE id = $1",
            )
            .bind(id)
            .bind(password_hash)
            .bind(now)
            .bind(revoke_tokens)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(store_error)?;
        Ok(result == 1)
    }

    async fn delete_user(&self, id: i64) -> StoreResult<Guarded<()>> {
        let _cleared = self.caches.after(Caches::clear_all);
        let backend = self.backend();
        let n_deleted = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                if backend == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(PG_ADMIN_LOCK)
                        .execute(&mut *tx)
                        .await?;
                }
                let done = sqlx::query(
                    "DELETE FROM users WHERE id = $1
                       AND (NOT is_admin
                            OR EXISTS (SELECT 1 FROM users other WHERE other.is_admin AND other.id <> $1))",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            }
            .await
        })
        .map_err(store_error)?;
        if n_deleted == 1 {
            Ok(Guarded::Done(()))
        } else {
            self.refusal(id).await
        }
    }
}

impl Db {
    /// Explains why a guarded write touched no row: the user is missing, or is the last admin.
    async fn refusal<T>(&self, id: i64) -> StoreResult<Guarded<T>> {
        Ok(match self.user_by_id(id).await? {
            None => Guarded::NotFound,
            Some(_) => Guarded::LastAdmin,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ThrottleRow {
    email: String,
    address: String,
    failures: i64,
    first_failure_at: DateTime<Utc>,
    last_failure_at: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
}

impl From<ThrottleRow> for LoginThrottle {
    fn from(row: ThrottleRow) -> LoginThrottle {
        LoginThrottle {
            email: row.email,
            address: row.address,
            failures: row.failures,
            first_failure_at: row.first_failure_at,
            last_failure_at: row.last_failure_at,
            blocked_until: row.blocked_until,
        }
    }
}

impl Db {
    pub(crate) async fn throttle_rows(
        &self,
        email: &str,
        address: &str,
    ) -> StoreResult<Vec<LoginThrottle>> {
        // Three primary-key lookups.
        let sql = concat!(
            "SELECT ",
            throttle_columns!(),
            " FROM login_throttles WHERE (email = $1 AND address = $2) OR (email = $1 AND address = '') OR (email = '' AND address = $2)"
        );
        let rows: Vec<ThrottleRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(email).bind(address).fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows.into_iter().map(LoginThrottle::from).collect())
    }
}
