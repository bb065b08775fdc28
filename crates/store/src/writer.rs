//! SQLite's hot writes on a connection of our own, on a thread of its own: a group commit's
//! batches go to it in one hand-over and come back in one, however many statements they
//! hold (sqlx's connection thread answers each statement separately, and on a busy core
//! every answer is a context switch).
//!
//! [`Batch`] is the statement builder the `push_…!` macros write into on SQLite (the same
//! calls as sqlx's `QueryBuilder`, `?` placeholders, values encoded as sqlx encodes them),
//! and [`Writer`] runs groups of batches: `BEGIN IMMEDIATE`, the batches, `COMMIT`; a
//! failing batch rolls the transaction back, which then runs again without it.
//!
//! Invariants:
//! - The caller holds the write pool's only connection while a group runs here, so this
//!   connection and sqlx's never write at the same time (no busy waits on the file lock).
//! - Every value is bound, never spliced into SQL; statements are prepared once and
//!   cached (a bounded cache, cleared when full).
//! - A failed `COMMIT` fails every batch of its group, and nothing of the group stays.

use std::{
    collections::HashMap,
    ffi::{CStr, CString, c_int},
    fmt::Display,
    path::Path,
    ptr,
    sync::mpsc,
};

use chrono::{DateTime, SecondsFormat, Utc};
use domain::store::{StoreError, StoreResult};
use libsqlite3_sys as ffi;
use serde::Serialize;
use sqlx::types::Json;
use tokio::sync::oneshot;

use crate::STALE_SAVE;

/// A bound value, encoded as sqlx encodes it for SQLite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Double(f64),
    Text(String),
}

/// What a batch can bind.
pub(crate) trait Bind {
    fn value(self) -> Value;
}

impl Bind for i64 {
    fn value(self) -> Value {
        Value::Int(self)
    }
}

impl Bind for i32 {
    fn value(self) -> Value {
        Value::Int(self.into())
    }
}

impl Bind for bool {
    fn value(self) -> Value {
        Value::Int(self.into())
    }
}

impl Bind for f64 {
    fn value(self) -> Value {
        Value::Double(self)
    }
}

impl Bind for &str {
    fn value(self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Bind for String {
    fn value(self) -> Value {
        Value::Text(self)
    }
}

impl Bind for &String {
    fn value(self) -> Value {
        Value::Text(self.clone())
    }
}

impl Bind for DateTime<Utc> {
    fn value(self) -> Value {
        Value::Text(self.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    }
}

impl<T: Serialize> Bind for Json<T> {
    fn value(self) -> Value {
        // Serialising a JSON tree or a derived type cannot fail.
        Value::Text(serde_json::to_string(&self.0).unwrap_or_else(|_| "null".into()))
    }
}

impl<T: Bind> Bind for Option<T> {
    fn value(self) -> Value {
        self.map_or(Value::Null, Bind::value)
    }
}

impl Bind for &Option<String> {
    fn value(self) -> Value {
        self.as_ref()
            .map_or(Value::Null, |s| Value::Text(s.clone()))
    }
}

impl Bind for &Option<i64> {
    fn value(self) -> Value {
        self.map_or(Value::Null, Value::Int)
    }
}

/// One statement and its values.
#[derive(Debug, Default)]
pub(crate) struct Statement {
    sql: String,
    args: Vec<Value>,
}

/// Statements written together (one batch of a group commit).
#[derive(Debug)]
pub(crate) struct Batch {
    statements: Vec<Statement>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            statements: vec![Statement::default()],
        }
    }

    fn last(&mut self) -> &mut Statement {
        self.statements.last_mut().expect("a batch has a statement")
    }

    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.last().sql, "{sql}");
        self
    }

    pub(crate) fn push_bind(&mut self, value: impl Bind) -> &mut Self {
        let last = self.last();
        last.sql.push('?');
        last.args.push(value.value());
        self
    }

    /// Values separated by `separator` (as `QueryBuilder::separated`).
    pub(crate) fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated {
            batch: self,
            separator,
            first: true,
        }
    }

    /// One row per item, as `QueryBuilder::push_values` writes `VALUES (…), (…)`; here each
    /// row is a statement of its own, the text written so far followed by `VALUES (…)`.
    /// Every row then runs the same cached statement, and SQLite keeps no statement journal
    /// (it copies every page a multi-row write changes inside a transaction, to undo that
    /// statement alone). Nothing may follow in the same statement.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut tuple: F)
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        let head = std::mem::take(self.last());
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.next_statement();
            }
            let last = self.last();
            last.sql.push_str(&head.sql);
            last.sql.push_str("VALUES (");
            last.args.extend(head.args.iter().cloned());
            tuple(self.separated(", "), item);
            self.push(")");
        }
        if self.last().sql.is_empty() {
            // No items: the statement stays as it was (and fails as it would in sqlx).
            *self.last() = head;
        }
    }

    /// Ends the statement being written; the next push starts another.
    pub(crate) fn next_statement(&mut self) {
        self.statements.push(Statement::default());
    }
}

pub(crate) struct Separated<'a> {
    batch: &'a mut Batch,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    pub(crate) fn push_bind(&mut self, value: impl Bind) -> &mut Self {
        if !self.first {
            self.batch.push(self.separator);
        }
        self.first = false;
        self.batch.push_bind(value);
        self
    }
}

/// A group for the writer thread, and where its answers go: one per batch.
struct Group {
    batches: Vec<Batch>,
    done: oneshot::Sender<Vec<StoreResult<()>>>,
}

/// The writer thread's handle; the thread ends when this is dropped.
pub(crate) struct Writer {
    groups: mpsc::Sender<Group>,
}

/// Cached prepared statements at most; the cache is cleared when full (an `IN (…)` list
/// or a chunked statement makes SQL of varying length).
const STATEMENT_CACHE: usize = 128;

impl Writer {
    /// Starts the thread, which opens the database at `path` as the pools do.
    pub(crate) fn start(path: &Path, busy_timeout_ms: u64) -> Writer {
        let (groups, inbox) = mpsc::channel::<Group>();
        let path = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut connection = Connection::open(&path, busy_timeout_ms);
                while let Ok(group) = inbox.recv() {
                    let answers = match &mut connection {
                        Ok(connection) => connection.run(&group.batches),
                        Err(message) => group
                            .batches
                            .iter()
                            .map(|_| Err(StoreError::Unavailable(message.clone())))
                            .collect(),
                    };
                    let _ = group.done.send(answers);
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "could not start the SQLite writer thread");
        }
        Writer { groups }
    }

    /// Runs `batches` in one transaction; one answer per batch, in order.
    pub(crate) async fn run(&self, batches: Vec<Batch>) -> Vec<StoreResult<()>> {
        let count = batches.len();
        let (done, answer) = oneshot::channel();
        let stopped = || {
            (0..count)
                .map(|_| {
                    Err(StoreError::Unavailable(
                        "the database writer stopped".into(),
                    ))
                })
                .collect()
        };
        if self.groups.send(Group { batches, done }).is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }
}

/// A raw connection with its statement cache.
struct Connection {
    db: *mut ffi::sqlite3,
    cache: HashMap<String, *mut ffi::sqlite3_stmt>,
}

/// A failed call: SQLite's extended code and message.
struct Failure {
    code: c_int,
    message: String,
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE
            | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            | ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::Conflict {
                constraint: "unknown".into(),
            },
            ffi::SQLITE_CONSTRAINT_NOTNULL => {
                StoreError::Other(format!("{STALE_SAVE}: {}", self.message))
            }
            code if code & 0xff == ffi::SQLITE_BUSY || code & 0xff == ffi::SQLITE_IOERR => {
                StoreError::Unavailable(self.message)
            }
            _ => StoreError::Other(format!(
                "error returned from database: ({}) {}",
                self.code, self.message
            )),
        }
    }
}

impl Connection {
    fn open(path: &Path, busy_timeout_ms: u64) -> Result<Connection, String> {
        let name = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| "the database path holds a NUL byte".to_string())?;
        let mut db = ptr::null_mut();
        // SAFETY: `name` is a valid C string and `db` a valid out pointer; the handle is
        // closed in `Drop` (also when opening failed, as SQLite asks).
        let opened = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        let mut connection = Connection {
            db,
            cache: HashMap::new(),
        };
        if opened != ffi::SQLITE_OK {
            return Err(connection.failure(opened).message);
        }
        // SAFETY: `db` is open.
        unsafe {
            ffi::sqlite3_extended_result_codes(db, 1);
            ffi::sqlite3_busy_timeout(db, busy_timeout_ms.min(i32::MAX as u64) as c_int);
        }
        // The same settings as the pools' connections (`Db::connect`).
        connection
            .exec(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA journal_size_limit = {};",
                crate::JOURNAL_SIZE_LIMIT
            ))
            .map_err(|f| f.message)?;
        Ok(connection)
    }

    fn failure(&self, code: c_int) -> Failure {
        // SAFETY: `db` is a connection handle (possibly one that failed to open, for which
        // SQLite still reports the error); the message is copied before the next call.
        let message = unsafe {
            let text = ffi::sqlite3_errmsg(self.db);
            if text.is_null() {
                format!("SQLite error {code}")
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        let extended = if self.db.is_null() {
            code
        } else {
            // SAFETY: as above.
            unsafe { ffi::sqlite3_extended_errcode(self.db) }
        };
        Failure {
            code: extended,
            message,
        }
    }

    /// Runs one statement without values (transaction control), prepared once.
    fn control(&mut self, sql: &str) -> Result<(), Failure> {
        let handle = self.prepared(sql)?;
        let result = self.bind_and_step(handle, &[]);
        // SAFETY: `handle` is a live prepared statement.
        unsafe {
            ffi::sqlite3_reset(handle);
        }
        result
    }

    /// Runs SQL without values (pragmas, several statements at once).
    fn exec(&mut self, sql: &str) -> Result<(), Failure> {
        let sql = CString::new(sql).expect("control SQL has no NUL");
        // SAFETY: `db` is open and `sql` a valid C string; no callback.
        let code = unsafe {
            ffi::sqlite3_exec(
                self.db,
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.failure(code))
        }
    }

    fn prepared(&mut self, sql: &str) -> Result<*mut ffi::sqlite3_stmt, Failure> {
        if let Some(&statement) = self.cache.get(sql) {
            return Ok(statement);
        }
        if self.cache.len() >= STATEMENT_CACHE {
            self.clear_cache();
        }
        let mut statement = ptr::null_mut();
        let length = c_int::try_from(sql.len()).map_err(|_| Failure {
            code: ffi::SQLITE_TOOBIG,
            message: "a statement is too long".into(),
        })?;
        // SAFETY: `sql` is valid for `length` bytes; `statement` is a valid out pointer.
        let code = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                sql.as_ptr().cast(),
                length,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut statement,
                ptr::null_mut(),
            )
        };
        if code != ffi::SQLITE_OK {
            return Err(self.failure(code));
        }
        self.cache.insert(sql.to_string(), statement);
        Ok(statement)
    }

    fn clear_cache(&mut self) {
        for (_, statement) in self.cache.drain() {
            // SAFETY: each cached statement was prepared on `db` and is finalized once.
            unsafe {
                ffi::sqlite3_finalize(statement);
            }
        }
    }

    /// Runs one statement with its values to its end.
    fn statement(&mut self, statement: &Statement) -> Result<(), Failure> {
        if statement.sql.trim().is_empty() {
            return Ok(());
        }
        let handle = self.prepared(&statement.sql)?;
        let result = self.bind_and_step(handle, &statement.args);
        // SAFETY: `handle` is a live prepared statement; resetting and clearing make it
        // ready for its next use and drop the borrowed values.
        unsafe {
            ffi::sqlite3_reset(handle);
            ffi::sqlite3_clear_bindings(handle);
        }
        result
    }

    fn bind_and_step(
        &mut self,
        handle: *mut ffi::sqlite3_stmt,
        args: &[Value],
    ) -> Result<(), Failure> {
        for (index, value) in args.iter().enumerate() {
            let at = c_int::try_from(index + 1).unwrap_or(c_int::MAX);
            // SAFETY: `handle` is live; text is bound as SQLITE_STATIC, valid because
            // `args` outlives the step and the bindings are cleared right after it.
            let code = unsafe {
                match value {
                    Value::Null => ffi::sqlite3_bind_null(handle, at),
                    Value::Int(v) => ffi::sqlite3_bind_int64(handle, at, *v),
                    Value::Double(v) => ffi::sqlite3_bind_double(handle, at, *v),
                    Value::Text(v) => ffi::sqlite3_bind_text64(
                        handle,
                        at,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(self.failure(code));
            }
        }
        loop {
            // SAFETY: `handle` is live and bound.
            match unsafe { ffi::sqlite3_step(handle) } {
                ffi::SQLITE_DONE => return Ok(()),
                ffi::SQLITE_ROW => continue,
                code => return Err(self.failure(code)),
            }
        }
    }

    fn batch(&mut self, batch: &Batch) -> Result<(), Failure> {
        for statement in &batch.statements {
            self.statement(statement)?;
        }
        Ok(())
    }

    /// One transaction for the group. Batches run without savepoints (a savepoint makes
    /// SQLite copy every page it changes first); when one fails, the transaction is rolled
    /// back and run again without it, so a failing batch is undone alone all the same.
    fn run(&mut self, batches: &[Batch]) -> Vec<StoreResult<()>> {
        let mut answers: Vec<Option<StoreResult<()>>> = batches.iter().map(|_| None).collect();
        // Every pass answers at least one batch.
        loop {
            if let Err(failure) = self.control("BEGIN IMMEDIATE") {
                return finish(answers, || {
                    Err(StoreError::Unavailable(failure.message.clone()))
                });
            }
            let failed = batches
                .iter()
                .enumerate()
                .filter(|(index, _)| answers[*index].is_none())
                .find_map(|(index, batch)| self.batch(batch).err().map(|f| (index, f)));
            if let Some((index, failure)) = failed {
                // Fails harmlessly when the failure already ended the transaction.
                let _ = self.control("ROLLBACK");
                answers[index] = Some(Err(failure.into_store_error()));
                if answers.iter().all(Option::is_some) {
                    return finish(answers, || Ok(()));
                }
                continue;
            }
            return match self.control("COMMIT") {
                Ok(()) => finish(answers, || Ok(())),
                Err(failure) => {
                    let _ = self.control("ROLLBACK");
                    let message = failure.into_store_error().to_string();
                    finish(answers, || Err(StoreError::Unavailable(message.clone())))
                }
            };
        }
    }
}

/// The answers given, and `rest` for the batches without one.
fn finish(
    answers: Vec<Option<StoreResult<()>>>,
    rest: impl Fn() -> StoreResult<()>,
) -> Vec<StoreResult<()>> {
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(&rest))
        .collect()
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.clear_cache();
        // SAFETY: every statement is finalized above; the handle is closed once.
        unsafe {
            ffi::sqlite3_close(self.db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_write_sql_as_the_query_builder_does() {
        let mut b = Batch::new();
        b.push("INSERT INTO t (a, b, c) VALUES (");
        b.separated(", ")
            .push_bind(1_i64)
            .push_bind(Some("x"))
            .push_bind(Json(serde_json::json!({"k": [1]})));
        b.push(")");
        b.next_statement();
        b.push("INSERT INTO u (a, b) ");
        b.push_values([1_i64, 2], |mut row, n| {
            row.push_bind(n).push_bind(None::<String>);
        });
        assert_eq!(
            b.statements[0].sql,
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?)"
        );
        assert_eq!(
            b.statements[0].args,
            vec![
                Value::Int(1),
                Value::Text("x".into()),
                Value::Text(r#"{"k":[1]}"#.into())
            ]
        );
        for row in [1, 2] {
            assert_eq!(b.statements[row].sql, "INSERT INTO u (a, b) VALUES (?, ?)");
            assert_eq!(
                b.statements[row].args,
                [Value::Int(row as i64), Value::Null]
            );
        }
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            at.value(),
            Value::Text("2026-11-26T10:00:00.123456+00:00".into())
        );
    }

    #[tokio::test]
    async fn groups_commit_whole_and_failing_batches_alone() {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-writer-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let writer = Writer::start(&dir.join("db.sqlite"), 1_000);
        let statement = |sql: &str| {
            let mut b = Batch::new();
            b.push(sql);
            b
        };
        let created = writer
            .run(vec![statement(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            )])
            .await;
        assert!(created[0].is_ok());
        let insert = |id: i64, v: Option<&str>| {
            let mut b = Batch::new();
            b.push("INSERT INTO t (id, v) VALUES (")
                .push_bind(id)
                .push(", ")
                .push_bind(v)
                .push(")");
            b
        };
        // The second batch breaks NOT NULL after a good statement, the third the primary
        // key: only they fail, and the batches around them are written.
        let mut two = insert(2, Some("b"));
        two.next_statement();
        two.push("INSERT INTO t (id, v) VALUES (3, NULL)");
        let answers = writer
            .run(vec![
                insert(1, Some("a")),
                two,
                insert(1, Some("again")),
                insert(4, Some("d")),
            ])
            .await;
        assert!(answers[0].is_ok());
        assert!(answers[3].is_ok());
        assert!(
            matches!(&answers[1], Err(StoreError::Other(m)) if m.starts_with(STALE_SAVE)),
            "{answers:?}"
        );
        assert!(matches!(answers[2], Err(StoreError::Conflict { .. })));
        // A lone failing batch leaves nothing either.
        let alone = writer.run(vec![insert(1, Some("dup"))]).await;
        assert!(matches!(alone[0], Err(StoreError::Conflict { .. })));
        let count = writer
            .run(vec![statement(
                "CREATE TABLE n AS SELECT COUNT(*) AS c, GROUP_CONCAT(v) AS vs FROM t",
            )])
            .await;
        assert!(count[0].is_ok());
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("db.sqlite").display()))
                .await
                .unwrap();
        let (c, vs): (i64, String) = sqlx::query_as("SELECT c, vs FROM n")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((c, vs.as_str()), (2, "a,d"));
        pool.close().await;
        drop(writer);
        let _ = std::fs::remove_dir_all(dir);
    }
}
