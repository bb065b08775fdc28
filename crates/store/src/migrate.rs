//! Versioned schema migrations, embedded in the binary, one SQL file per backend and version.
//!
//! Invariants:
//! - Versions are the same for both backends, and a landed migration is never edited:
//!   its checksum is recorded and a changed file stops the start.
//! - All pending migrations apply in one transaction, under a lock (an advisory lock on
//!   PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so replicas starting together migrate once.
//! - A database migrated by a newer build (an unknown version) is refused, not downgraded.

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::{Backend, Db, stored_time, with_pool, with_writer};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    fn checksum(&self, backend: Backend) -> String {
        hex::encode(Sha256::digest(self.sql(backend).as_bytes()))
    }
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $file)),
            postgres: include_str!(concat!("../migrations/postgres/", $file)),
        }
    };
}

/// Every migration, in order. Append only.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "foundation", "0001_foundation.sql"),
    migration!(2, "workflows", "0002_workflows.sql"),
    migration!(3, "models", "0003_models.sql"),
    migration!(4, "usage", "0004_usage.sql"),
    migration!(5, "runs", "0005_runs.sql"),
    migration!(6, "widgets_threads", "0006_widgets_threads.sql"),
    migration!(7, "chat", "0007_chat.sql"),
    migration!(8, "chat_attachments", "0008_chat_attachments.sql"),
    migration!(9, "keys_sessions", "0009_keys_sessions.sql"),
    migration!(10, "attachment_end_user", "0010_attachment_end_user.sql"),
    migration!(11, "knowledge", "0011_knowledge.sql"),
    migration!(12, "mcp", "0012_mcp.sql"),
    migration!(13, "run_leases", "0013_run_leases.sql"),
    migration!(14, "login_throttles", "0014_login_throttles.sql"),
    migration!(15, "model_origin", "0015_model_origin.sql"),
    migration!(16, "hot_indexes", "0016_hot_indexes.sql"),
    migration!(17, "retention", "0017_retention.sql"),
    migration!(18, "run_history_before", "0018_run_history_before.sql"),
    migration!(19, "blobs", "0019_blobs.sql"),
];

/// Arbitrary constant naming Switchyard's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x5357_5944_4d49_4752;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {version} ({name}) failed: {message}")]
    Failed {
        version: i64,
        name: &'static str,
        message: String,
    },
    #[error(
        "migration {version} ({name}) was changed after it was applied to this database; \
         migrations must never be edited once landed"
    )]
    Edited { version: i64, name: String },
    #[error(
        "the database has migration {0}, which this build does not know: \
         it was migrated by a newer Switchyard"
    )]
    FromTheFuture(i64),
    #[error("could not read or record migrations: {0}")]
    Database(String),
}

fn db_err(err: sqlx::Error) -> MigrationError {
    let message = err.to_string();
    MigrationError::Database(message)
}

const CREATE_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)";
const CREATE_TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)";

fn hint_for(backend: Backend, message: &str) -> String {
    if backend == Backend::Postgres && message.contains("vector") && message.contains("extension") {
        format!(
            "{message} (the pgvector extension is not installed on the PostgreSQL server; \
             run scripts/install-pgvector.sh on it)"
        )
    } else {
        message.to_string()
    }
}

/// Applies every pending migration; returns the versions applied.
pub async fn run(db: &Db) -> Result<Vec<i64>, MigrationError> {
    let backend = db.backend();
    let create_table = match backend {
        Backend::Sqlite => CREATE_TABLE_SQLITE,
        Backend::Postgres => CREATE_TABLE_POSTGRES,
    };
    with_writer!(db, pool => {
        let mut conn = pool.acquire().await.map_err(db_err)?;
        // Take the lock before anything else, even creating the bookkeeping table: two
        // PostgreSQL sessions racing on `CREATE TABLE IF NOT EXISTS` can both try to create
        // it. SQLite: the write lock up front (`BEGIN IMMEDIATE`), so a concurrent starter
        // waits instead of failing halfway. PostgreSQL: a transaction-scoped advisory lock.
        let mut tx = match backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?,
            Backend::Postgres => conn.begin().await.map_err(db_err)?,
        };
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        sqlx::raw_sql(create_table).execute(&mut *tx).await.map_err(db_err)?;
        let applied: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        check_applied(backend, &applied)?;
        let mut newly_applied = Vec::new();
        for migration in MIGRATIONS {
            if applied.iter().any(|(version, _, _)| *version == migration.version) {
                continue;
            }
            sqlx::raw_sql(migration.sql(backend))
                .execute(&mut *tx)
                .await
                .map_err(|err| MigrationError::Failed {
                    version: migration.version,
                    name: migration.name,
                    message: hint_for(backend, &err.to_string()),
                })?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum(backend))
            .bind(stored_time(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            newly_applied.push(migration.version);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(newly_applied)
    })
}

fn check_applied(
    backend: Backend,
    applied: &[(i64, String, String)],
) -> Result<(), MigrationError> {
    for (version, name, checksum) in applied {
        let Some(known) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(MigrationError::FromTheFuture(*version));
        };
        if known.checksum(backend) != *checksum {
            return Err(MigrationError::Edited {
                version: *version,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// How many known migrations are not applied yet (all of them on an empty database).
pub async fn pending(db: &Db) -> Result<usize, MigrationError> {
    let applied: Result<Vec<(i64,)>, sqlx::Error> = with_pool!(db, pool => {
        sqlx::query_as("SELECT version FROM schema_migrations").fetch_all(pool).await
    });
    let applied = match applied {
        Ok(rows) => rows,
        // No bookkeeping table yet: nothing has been applied.
        Err(sqlx::Error::Database(err)) if err.message().contains("schema_migrations") => {
            return Ok(MIGRATIONS.len());
        }
        Err(err) => return Err(db_err(err)),
    };
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v,)| *v == m.version))
        .count())
}

impl Db {
    /// Applies pending migrations. See the module documentation for the guarantees.
    pub async fn migrate(&self) -> Result<Vec<i64>, MigrationError> {
        run(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Landed migrations are frozen: their checksums are listed in `migrations.lock`.
    #[test]
    fn landed_migrations_are_unchanged() {
        let lock = include_str!("../migrations/migrations.lock");
        let locked: Vec<(&str, &str, &str)> = lock
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let mut parts = line.split_whitespace();
                (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            locked.len(),
            MIGRATIONS.len() * 2,
            "every migration has a line per backend in migrations.lock"
        );
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                index as i64 + 1,
                "versions are dense and ordered"
            );
            for (backend, name) in [(Backend::Postgres, "postgres"), (Backend::Sqlite, "sqlite")] {
                let entry = locked
                    .iter()
                    .find(|(file, b, _)| {
                        *b == name && file.starts_with(&format!("{:04}_", migration.version))
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "migration {} ({name}) is not in migrations.lock",
                            migration.version
                        )
                    });
                assert_eq!(
                    entry.2,
                    migration.checksum(backend),
                    "migration {} ({name}) was edited after landing; add a new migration instead",
                    migration.version
                );
            }
        }
    }
}
