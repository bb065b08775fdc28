//! The only crate with SQL: one query set for SQLite and PostgreSQL, and their migrations.
//!
//! Queries are written once and expanded for each backend by [`with_pool!`]; each arm is
//! compiled against its own driver, so PostgreSQL keeps native types (`bigint`, `jsonb`,
//! `timestamptz`) while SQLite stores the same Rust values as integers and text.
//! Where the dialects differ, the code branches on [`Backend`] in the open.

pub mod args;
mod blobs;
mod cache;
mod chat;
mod group;
mod housekeeping;
mod keys;
mod knowledge;
mod listen;
mod mcp;
mod migrate;
mod models;
pub mod plans;
mod runs;
mod settings;
mod usage;
mod users;
mod vector_index;
mod widgets;
mod workflows;
mod writer;

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::{
    secret::Secret,
    store::{PoolStats, Store, StoreError, StoreHealth},
};
use serde::{Deserialize, Serialize};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

pub use blobs::LocalBlobs;
pub use migrate::{MIGRATIONS, MigrationError};

/// Database settings (the `[database]` table of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSettings {
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`. Defaults to
    /// `switchyard.db` in the data directory.
    pub url: Option<Secret>,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing, in seconds.
    pub acquire_timeout_secs: u64,
    /// How long SQLite waits on a locked database before giving up, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// How long hot rows that change rarely (users behind tokens, API keys, settings,
    /// workflows and their production versions, the model registry) are kept in memory,
    /// in milliseconds: writes by other replicas show after at most this long. 0 turns
    /// the cache off.
    pub cache_ttl_ms: u64,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            url: None,
            max_connections: 10,
            acquire_timeout_secs: 10,
            sqlite_busy_timeout_ms: 5_000,
            cache_ttl_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Tells the backend from a URL's scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// SQLite has one writer at a time. Its writes go through a pool of one connection, so
/// they queue here in order instead of meeting a locked file and sleeping in SQLite's
/// busy handler; reads use the other pool, side by side (WAL readers never wait).
///
/// The hot writes share transactions through `group` (see `group.rs`), run on a
/// connection of their own by the writer thread (`writer.rs`); the other writes go
/// through the write pool. Both pass through `lane`, one at a time, first come first
/// served, so the two connections never write at once and none waits forever.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite {
        read: sqlx::SqlitePool,
        write: sqlx::SqlitePool,
        lane: std::sync::Arc<tokio::sync::Semaphore>,
        /// The hot writes (threads, runs' starts and saves, chat items, usage) in shared
        /// transactions.
        group: std::sync::Arc<group::GroupCommit>,
    },
    Postgres(sqlx::PgPool),
}

/// Runs the same body against whichever pool the database uses, for a statement that
/// only reads.
///
/// `$pool` is bound to `&SqlitePool` or `&PgPool`; the body is compiled once per backend.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::Pool::Sqlite { read: $pool, .. } => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Statements written together, pushed by `$body` into the query builder `$b` with
/// `next!()` between two of them (each statement's SQL is written once, for both
/// backends): on SQLite one batch in a group commit (`group.rs`), ahead of other batches
/// when `urgent`; on PostgreSQL one transaction. Evaluates to `StoreResult<()>`.
macro_rules! together {
    ($db:expr, urgent: $urgent:expr, |$b:ident| $body:block) => {
        match &$db.pool {
            $crate::Pool::Sqlite { group, .. } => {
                let mut $b = $crate::writer::Batch::new();
                #[allow(unused_macros)]
                macro_rules! next {
                    () => {
                        $b.next_statement();
                    };
                }
                $body
                group.run($b, $urgent).await
            }
            $crate::Pool::Postgres(pool) => async {
                let mut tx = pool.begin().await?;
                let mut $b = sqlx::QueryBuilder::<sqlx::Postgres>::new("");
                #[allow(unused_macros)]
                macro_rules! next {
                    () => {
                        $b.build().execute(&mut *tx).await?;
                        $b = sqlx::QueryBuilder::new("");
                    };
                }
                $body
                $b.build().execute(&mut *tx).await?;
                tx.commit().await
            }
            .await
            .map_err($crate::store_error),
        }
    };
}
pub(crate) use together;

/// A write of one statement, pushed into the builder `$b` by `$push`: on SQLite it joins
/// the next group commit (`group.rs`), on PostgreSQL it runs on its own. Evaluates to
/// `StoreResult<()>`.
macro_rules! grouped_write {
    ($db:expr, |$b:ident| $push:block) => {
        match &$db.pool {
            $crate::Pool::Sqlite { group, .. } => {
                let mut $b = $crate::writer::Batch::new();
                $push;
                group.run($b, false).await
            }
            $crate::Pool::Postgres(pool) => {
                let mut $b = sqlx::QueryBuilder::new("");
                $push;
                $b.build()
                    .execute(pool)
                    .await
                    .map(|_| ())
                    .map_err($crate::store_error)
            }
        }
    };
}
pub(crate) use grouped_write;

/// [`with_pool!`] for statements and transactions that write.
macro_rules! with_writer {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::Pool::Sqlite {
                write: $pool, lane, ..
            } => {
                let _lane = lane.acquire().await;
                $body
            }
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_writer;

/// A connection pool to SQLite or PostgreSQL; implements every storage trait of `domain`.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: Pool,
    backend: Backend,
    pub(crate) caches: std::sync::Arc<cache::Caches>,
    /// The (store, dimension) pairs whose vector index this pool has made sure of.
    pub(crate) vector_indexes:
        std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(i64, i32)>>>,
    /// SQLite: stores' vectors as bits in memory, for the first pass of a vector search.
    pub(crate) bit_indexes: std::sync::Arc<vector_index::BitIndexes>,
    /// Wakes the readers following a run when this pool commits one of its saves (and, on
    /// PostgreSQL, when the listener hears another replica's; see `listen.rs`).
    pub(crate) run_signals: std::sync::Arc<domain::runs::signals::RunSignals>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("database.url must start with sqlite:// or postgres://")]
    UnknownScheme,
    #[error("database.url is invalid: {0}")]
    BadUrl(String),
    #[error("could not create the folder for the SQLite database {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("could not connect to the {backend} database: {message}")]
    Connect {
        backend: &'static str,
        message: String,
    },
}

/// Makes the database file private to the server's user before SQLite opens it: created
/// empty with mode 0600 when missing (SQLite gives its `-wal` and `-shm` files the mode of
/// the database file), and an existing file and its companions set to 0600.
fn private_sqlite_files(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Ok(());
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Db {
    /// Opens a pool. For SQLite the file and its folder are created when missing, and every
    /// connection runs in WAL mode with foreign keys on and a busy timeout.
    pub async fn connect(url: &str, settings: &DbSettings) -> Result<Db, ConnectError> {
        let backend = Backend::from_url(url).ok_or(ConnectError::UnknownScheme)?;
        let acquire_timeout = Duration::from_secs(settings.acquire_timeout_secs.max(1));
        let connect_err = |err: sqlx::Error| ConnectError::Connect {
            backend: backend.name(),
            message: err.to_string(),
        };
        let pool = match backend {
            Backend::Sqlite => {
                knowledge::register_sqlite_vec();
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|err| ConnectError::BadUrl(err.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_millis(settings.sqlite_busy_timeout_ms))
                    // SQLite's own checkpoint every 1,000 pages stays: a larger one saves
                    // CPU but makes the write that runs it (and all queued behind) wait
                    // tens of milliseconds. The WAL file is cut back to 64 MiB after.
                    .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT);
                let parent = options.get_filename().parent().map(|p| p.to_path_buf());
                if let Some(parent) = parent.filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(&parent).map_err(|source| ConnectError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                private_sqlite_files(options.get_filename()).map_err(|source| {
                    ConnectError::CreateDir {
                        path: options.get_filename().display().to_string(),
                        source,
                    }
                })?;
                // A "ping" is a round trip to the connection's worker thread, as costly as
                // a statement; a broken file shows on use anyway.
                let patience = Duration::from_millis(settings.sqlite_busy_timeout_ms);
                let write = sqlite_pool(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .test_before_acquire(false)
                        .acquire_timeout(acquire_timeout),
                    &options,
                    patience,
                )
                .await
                .map_err(connect_err)?;
                let read = sqlite_pool(
                    SqlitePoolOptions::new()
                        .max_connections(settings.max_connections.max(1))
                        .test_before_acquire(false)
                        .acquire_timeout(acquire_timeout),
                    &options,
                    patience,
                )
                .await
                .map_err(connect_err)?;
                let writer =
                    writer::Writer::start(options.get_filename(), settings.sqlite_busy_timeout_ms);
                let lane = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
                Pool::Sqlite {
                    read,
                    group: std::sync::Arc::new(group::GroupCommit::new(lane.clone(), writer)),
                    write,
                    lane,
                }
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|err| ConnectError::BadUrl(err.to_string()))?;
                let pool = PgPoolOptions::new()
                    .max_connections(settings.max_connections.max(1))
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Pool::Postgres(pool)
            }
        };
        Ok(Db {
            pool,
            backend,
            vector_indexes: std::sync::Arc::default(),
            bit_indexes: std::sync::Arc::default(),
            run_signals: std::sync::Arc::default(),
            caches: std::sync::Arc::new(cache::Caches::new(Duration::from_millis(
                settings.cache_ttl_ms,
            ))),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The wake-ups of this pool's run saves, for the services' readers.
    pub fn run_signals(&self) -> std::sync::Arc<domain::runs::signals::RunSignals> {
        self.run_signals.clone()
    }

    /// Waits for checked-out connections to return, then closes the pool.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// How a NOT NULL violation's message starts (a stale run save is one; see `runs.rs`).
pub(crate) const STALE_SAVE: &str = "a required value is missing";

/// Maps a driver error onto the domain's classification. The one place that does so.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db_err)
            if db_err.is_unique_violation() || db_err.is_foreign_key_violation() =>
        {
            StoreError::Conflict {
                constraint: db_err.constraint().unwrap_or("unknown").to_string(),
            }
        }
        sqlx::Error::Database(db_err)
            if db_err.kind() == sqlx::error::ErrorKind::NotNullViolation =>
        {
            StoreError::Other(format!("{STALE_SAVE}: {}", db_err.message()))
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(err.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Timestamps are stored at microsecond precision, the finest PostgreSQL keeps, so both
/// backends read back exactly what was written.
/// Opens a SQLite pool, trying again while the file is locked: a connection's setup
/// (`journal_mode`) can meet another process's migration or checkpoint, where SQLite
/// answers "database is locked" at once rather than waiting for its busy timeout.
async fn sqlite_pool(
    pool: SqlitePoolOptions,
    options: &SqliteConnectOptions,
    patience: Duration,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match pool.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(err))
                if err.code().as_deref() == Some("5") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// The size SQLite cuts the WAL file back to after a checkpoint (64 MiB), for every
/// connection (the pools' and the writer thread's).
pub(crate) const JOURNAL_SIZE_LIMIT: &str = "67108864";

pub(crate) fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

#[async_trait]
impl Store for Db {
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    async fn health(&self) -> StoreHealth {
        let ping =
            with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()));
        match ping {
            Err(err) => StoreHealth {
                backend: self.backend.name(),
                reachable: false,
                migrations_pending: 0,
                error: Some(store_error(err).to_string()),
            },
            Ok(()) => match migrate::pending(self).await {
                Ok(pending) => StoreHealth {
                    backend: self.backend.name(),
                    reachable: true,
                    migrations_pending: pending,
                    error: None,
                },
                Err(err) => StoreHealth {
                    backend: self.backend.name(),
                    reachable: true,
                    migrations_pending: 0,
                    error: Some(err.to_string()),
                },
            },
        }
    }

    fn pool_stats(&self) -> PoolStats {
        fn stats<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        match &self.pool {
            Pool::Sqlite { read, write, .. } => {
                let (read, write) = (stats(read), stats(write));
                PoolStats {
                    size: read.size + write.size,
                    idle: read.idle + write.idle,
                    max: read.max + write.max,
                }
            }
            Pool::Postgres(pool) => stats(pool),
        }
    }
}
