//! `ChatStore` on both backends: ChatKit threads, their items and feedback.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conversation::{ItemBody, Order, ThreadItem, ThreadStatus};
use domain::{
    chat::{ChatThread, PageRequest, StoredAttachment},
    store::{ChatStore, StoreError, StoreResult},
};
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, types::Json};

use crate::{
    Db,
    args::{Arg, Built, bind_args},
    grouped_write, store_error, stored_time, together, with_pool, with_writer,
};

macro_rules! thread_columns {
    () => {
        "id, user_id, end_user, workflow_id, title, status, allowed_image_domains, metadata, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ThreadRow {
    id: String,
    user_id: i64,
    end_user: Option<String>,
    workflow_id: Option<i64>,
    title: Option<String>,
    status: Json<ThreadStatus>,
    allowed_image_domains: Option<Json<Vec<String>>>,
    metadata: Json<Map<String, Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ThreadRow> for ChatThread {
    fn from(row: ThreadRow) -> ChatThread {
        ChatThread {
            id: row.id,
            user_id: row.user_id,
            end_user: row.end_user,
            workflow_id: row.workflow_id,
            title: row.title,
            status: row.status.0,
            allowed_image_domains: row.allowed_image_domains.map(|d| d.0),
            metadata: row.metadata.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: String,
    user_id: i64,
    end_user: Option<String>,
    thread_id: Option<String>,
    name: String,
    mime_type: String,
    size: i64,
    uploaded: bool,
    token: String,
    created_at: DateTime<Utc>,
}

impl From<AttachmentRow> for StoredAttachment {
    fn from(row: AttachmentRow) -> StoredAttachment {
        StoredAttachment {
            id: row.id,
            user_id: row.user_id,
            end_user: row.end_user,
            thread_id: row.thread_id,
            name: row.name,
            mime_type: row.mime_type,
            size: row.size,
            uploaded: row.uploaded,
            token: row.token,
            created_at: row.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    data: Json<Value>,
}

fn item_of(row: ItemRow) -> StoreResult<ThreadItem> {
    serde_json::from_value(row.data.0)
        .map_err(|err| StoreError::Other(format!("a stored thread item is unreadable: {err}")))
}

fn item_json(item: &ThreadItem) -> StoreResult<Value> {
    serde_json::to_value(item).map_err(|err| StoreError::Other(err.to_string()))
}

/// How many rows to read: one more than the page, to know whether more follow.
fn probe(page: &PageRequest) -> i64 {
    page.limit + 1
}

fn split<T>(mut rows: Vec<T>, page: &PageRequest) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit.max(0) as usize);
    (rows, more)
}

/// A new thread's row (written once for both backends; see `runs.rs`).
macro_rules! push_insert_thread {
    ($b:expr, $thread:expr) => {{
        let thread = $thread;
        $b.push(
            "INSERT INTO chat_threads (id, user_id, workflow_id, title, status, allowed_image_domains, metadata, created_at, updated_at, end_user) VALUES (",
        );
        $b.separated(", ")
            .push_bind(&thread.id)
            .push_bind(thread.user_id)
            .push_bind(thread.workflow_id)
            .push_bind(&thread.title)
            .push_bind(Json(&thread.status))
            .push_bind(thread.allowed_image_domains.as_ref().map(Json))
            .push_bind(Json(&thread.metadata))
            .push_bind(stored_time(thread.created_at))
            .push_bind(stored_time(thread.updated_at))
            .push_bind(&thread.end_user);
        $b.push(")");
    }};
}

/// An item of a thread by its id: the primary key.
pub(crate) const CHAT_ITEM: &str = "SELECT data FROM chat_items WHERE id = $1 AND thread_id = $2";

/// The next position in a thread, inside an item's insert, up to the thread's id: the
/// `(thread_id, seq)` key.
pub(crate) const NEXT_ITEM_SEQ: &str =
    "(SELECT COALESCE(MAX(seq), 0) + 1 FROM chat_items WHERE thread_id = ";

/// A thread's items after one (a retried answer): the `(thread_id, seq)` key.
pub(crate) const DELETE_ITEMS_AFTER: &str = "DELETE FROM chat_items WHERE thread_id = $1
       AND seq > (SELECT c.seq FROM chat_items c WHERE c.id = $2 AND c.thread_id = $1)";

/// How a page's cursor compares and its rows sort: after the cursor in the page's order.
fn direction(page: &PageRequest) -> (&'static str, &'static str) {
    match page.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    }
}

/// A page of a user's threads (their own, or one end user's), newest or oldest first,
/// after a cursor when one is given: `chat_threads_owner_idx` (user, end user, time, id).
pub(crate) fn list_threads_sql(user_id: i64, end_user: Option<&str>, page: &PageRequest) -> Built {
    let mut built = Built::new(concat!(
        "SELECT ",
        thread_columns!(),
        " FROM chat_threads t"
    ));
    built.push(" WHERE t.user_id = ?", [Arg::Int(user_id)]);
    match end_user {
        Some(end_user) => built.push(" AND t.end_user = ?", [Arg::Text(end_user.into())]),
        None => built.text(" AND t.end_user IS NULL"),
    };
    let (compare, order) = direction(page);
    if let Some(after) = &page.after {
        built.push(
            &format!(
                " AND (t.created_at, t.id) {compare} (SELECT c.created_at, c.id FROM chat_threads c WHERE c.id = ?)"
            ),
            [Arg::Text(after.clone())],
        );
    }
    built.push(
        &format!(" ORDER BY t.created_at {order}, t.id {order} LIMIT ?"),
        [Arg::Int(probe(page))],
    );
    built
}

/// A page of a thread's items in either order, after a cursor when one is given: the
/// `(thread_id, seq)` key.
pub(crate) fn list_items_sql(thread_id: &str, page: &PageRequest, include_hidden: bool) -> Built {
    let mut built = Built::new("SELECT data FROM chat_items i");
    built.push(" WHERE i.thread_id = ?", [Arg::Text(thread_id.into())]);
    let (compare, order) = direction(page);
    if let Some(after) = &page.after {
        built.push(
            &format!(
                " AND i.seq {compare} (SELECT c.seq FROM chat_items c WHERE c.id = ? AND c.thread_id = ?)"
            ),
            [Arg::Text(after.clone()), Arg::Text(thread_id.into())],
        );
    }
    if !include_hidden {
        built.text(" AND i.kind NOT IN ('hidden_context_item', 'sdk_hidden_context')");
    }
    built.push(
        &format!(" ORDER BY i.seq {order} LIMIT ?"),
        [Arg::Int(probe(page))],
    );
    built
}

/// Feedback newest first, of one thread or all: `chat_feedback_thread_idx` or
/// `chat_feedback_created_idx`.
pub(crate) fn list_feedback_sql(thread_id: Option<&str>, limit: i64) -> Built {
    let mut built = Built::new(
        "SELECT f.thread_id, f.item_id, f.user_id, f.kind, f.created_at, i.data FROM chat_feedback f
         LEFT JOIN chat_items i ON i.id = f.item_id",
    );
    if let Some(thread_id) = thread_id {
        built.push(" WHERE f.thread_id = ?", [Arg::Text(thread_id.into())]);
    }
    built.push(
        " ORDER BY f.created_at DESC, f.item_id LIMIT ?",
        [Arg::Int(limit)],
    );
    built
}

/// An item at the next position in its thread ([`NEXT_ITEM_SEQ`]).
macro_rules! push_insert_item {
    ($b:expr, $item:expr, $data:expr) => {{
        let item: &ThreadItem = $item;
        $b.push("INSERT INTO chat_items (id, thread_id, seq, kind, data, created_at) VALUES (")
            .push_bind(&item.id)
            .push(", ")
            .push_bind(&item.thread_id)
            .push(", ")
            .push(NEXT_ITEM_SEQ)
            .push_bind(&item.thread_id)
            .push("), ")
            .push_bind(item.kind())
            .push(", ")
            .push_bind(Json($data))
            .push(", ")
            .push_bind(stored_time(item.created_at))
            .push(")");
    }};
}

#[async_trait]
impl ChatStore for Db {
    async fn insert_chat_thread(
        &self,
        thread: &ChatThread,
        first_item: Option<&ThreadItem>,
    ) -> StoreResult<()> {
        let data = first_item.map(item_json).transpose()?;
        let first = first_item.zip(data.as_ref());
        // Urgent: the thread's first event waits for it.
        together!(self, urgent: true, |b| {
            push_insert_thread!(b, thread);
            if let Some((item, data)) = first {
                next!();
                push_insert_item!(b, item, data);
            }
        })
    }

    async fn chat_thread(&self, id: &str) -> StoreResult<Option<ChatThread>> {
        let sql = concat!(
            "SELECT ",
            thread_columns!(),
            " FROM chat_threads WHERE id = $1"
        );
        let row: Option<ThreadRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn title_chat_thread(
        &self,
        id: &str,
        title: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ChatThread>> {
        let sql = concat!(
            "UPDATE chat_threads SET title = $2, updated_at = $3 WHERE id = $1 AND title IS NULL RETURNING ",
            thread_columns!()
        );
        let row: Option<ThreadRow> = with_writer!(self, pool => {
            sqlx::query_as(sql)
                .bind(id)
                .bind(title)
                .bind(stored_time(now))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn update_chat_thread(&self, thread: &ChatThread) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "UPDATE chat_threads SET workflow_id = $2, title = $3, status = $4, allowed_image_domains = $5,
                    metadata = $6, updated_at = $7 WHERE id = $1",
            )
            .bind(&thread.id)
            .bind(thread.workflow_id)
            .bind(&thread.title)
            .bind(Json(&thread.status))
            .bind(thread.allowed_image_domains.as_ref().map(Json))
            .bind(Json(&thread.metadata))
            .bind(stored_time(thread.updated_at))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn delete_chat_thread(&self, id: &str) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM chat_threads WHERE id = $1").bind(id).execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn list_chat_threads(
        &self,
        user_id: i64,
        end_user: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<(Vec<ChatThread>, bool)> {
        let built = list_threads_sql(user_id, end_user, page);
        let rows: Vec<ThreadRow> = with_pool!(self, pool => {
            bind_args!(sqlx::query_as(AssertSqlSafe(built.sql.as_str())), &built.args)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        let (rows, more) = split(rows, page);
        Ok((rows.into_iter().map(Into::into).collect(), more))
    }

    async fn insert_chat_item(&self, item: &ThreadItem) -> StoreResult<()> {
        let data = item_json(item)?;
        // The position is the next in the thread; a concurrent insert that took it is
        // retried.
        let mut attempt = 0;
        loop {
            // A user's message is the thread's latest activity (what retention goes by),
            // and urgent: the turn's first event waits for it, as a new thread's does.
            // Other items are one statement (no transaction on PostgreSQL).
            let inserted = if matches!(item.body, ItemBody::UserMessage { .. }) {
                together!(self, urgent: true, |b| {
                    push_insert_item!(b, item, &data);
                    next!();
                    b.push("UPDATE chat_threads SET updated_at = ")
                        .push_bind(stored_time(item.created_at))
                        .push(" WHERE id = ")
                        .push_bind(&item.thread_id);
                })
            } else {
                grouped_write!(self, |b| {
                    push_insert_item!(b, item, &data);
                })
            };
            match inserted {
                Err(StoreError::Conflict { .. }) if attempt < 5 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn save_chat_item(&self, item: &ThreadItem) -> StoreResult<()> {
        let data = item_json(item)?;
        let updated = with_writer!(self, pool => {
            sqlx::query("UPDATE chat_items SET kind = $3, data = $4 WHERE id = $1 AND thread_id = $2")
                .bind(&item.id)
                .bind(&item.thread_id)
                .bind(item.kind())
                .bind(Json(&data))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        if updated == 0 {
            self.insert_chat_item(item).await?;
        }
        Ok(())
    }

    async fn chat_item(&self, thread_id: &str, item_id: &str) -> StoreResult<Option<ThreadItem>> {
        let row: Option<ItemRow> = with_pool!(self, pool => {
            sqlx::query_as(CHAT_ITEM)
                .bind(item_id)
                .bind(thread_id)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        row.map(item_of).transpose()
    }

    async fn list_chat_items(
        &self,
        thread_id: &str,
        page: &PageRequest,
        include_hidden: bool,
    ) -> StoreResult<(Vec<ThreadItem>, bool)> {
        let built = list_items_sql(thread_id, page, include_hidden);
        let rows: Vec<ItemRow> = with_pool!(self, pool => {
            bind_args!(sqlx::query_as(AssertSqlSafe(built.sql.as_str())), &built.args)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        let (rows, more) = split(rows, page);
        let items = rows
            .into_iter()
            .map(item_of)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((items, more))
    }

    async fn delete_chat_items_after(&self, thread_id: &str, item_id: &str) -> StoreResult<u64> {
        with_writer!(self, pool => {
            sqlx::query(DELETE_ITEMS_AFTER)
            .bind(thread_id)
            .bind(item_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(store_error)
    }

    async fn put_chat_feedback(
        &self,
        thread_id: &str,
        item_id: &str,
        user_id: i64,
        kind: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO chat_feedback (item_id, user_id, thread_id, kind, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (item_id, user_id) DO UPDATE SET kind = excluded.kind, created_at = excluded.created_at",
            )
            .bind(item_id)
            .bind(user_id)
            .bind(thread_id)
            .bind(kind)
            .bind(stored_time(now))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn insert_chat_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO chat_attachments (id, user_id, thread_id, name, mime_type, size, uploaded, token, created_at, end_user)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&attachment.id)
            .bind(attachment.user_id)
            .bind(&attachment.thread_id)
            .bind(&attachment.name)
            .bind(&attachment.mime_type)
            .bind(attachment.size)
            .bind(attachment.uploaded)
            .bind(&attachment.token)
            .bind(stored_time(attachment.created_at))
            .bind(&attachment.end_user)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn chat_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        let row: Option<AttachmentRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, user_id, end_user, thread_id, name, mime_type, size, uploaded, token, created_at
                 FROM chat_attachments WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn update_chat_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE chat_attachments SET thread_id = $2, size = $3, uploaded = $4 WHERE id = $1")
                .bind(&attachment.id)
                .bind(&attachment.thread_id)
                .bind(attachment.size)
                .bind(attachment.uploaded)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn plain_attachment_tokens(&self, limit: i64) -> StoreResult<Vec<(String, String)>> {
        with_pool!(self, pool => {
            sqlx::query_as("SELECT id, token FROM chat_attachments WHERE token NOT LIKE 'sha256:%' ORDER BY id LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)
    }

    async fn set_attachment_token_hash(&self, id: &str, hash: &str) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE chat_attachments SET token = $2 WHERE id = $1")
                .bind(id)
                .bind(hash)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn delete_chat_attachment(&self, id: &str) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM chat_attachments WHERE id = $1").bind(id).execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn list_chat_feedback(
        &self,
        thread_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<domain::chat::Feedback>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            thread_id: String,
            item_id: String,
            user_id: i64,
            kind: String,
            created_at: DateTime<Utc>,
            data: Option<Json<Value>>,
        }
        let built = list_feedback_sql(thread_id, limit);
        let rows: Vec<Row> = with_pool!(self, pool => {
            bind_args!(sqlx::query_as(AssertSqlSafe(built.sql.as_str())), &built.args)
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|r| domain::chat::Feedback {
                thread_id: r.thread_id,
                item_id: r.item_id,
                user_id: r.user_id,
                kind: r.kind,
                created_at: r.created_at,
                item: r.data.and_then(|d| serde_json::from_value(d.0).ok()),
            })
            .collect())
    }
}
