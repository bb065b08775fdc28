//! `KnowledgeStore` on both backends: vector stores, documents, chunks with their
//! full-text and vector indexes, and ingestion jobs.
//!
//! The dialects differ in the indexes only:
//! - SQLite: FTS5 (`vector_chunks_fts`, kept by triggers) and one sqlite-vec `vec0` table
//!   per dimension (`vec_chunks_<dims>`, rowid = chunk id, partitioned by store), created
//!   with a trigger that deletes a chunk's vector with the chunk.
//! - PostgreSQL: a generated `tsvector` column with a GIN index, and the `embedding`
//!   column with one partial HNSW index per dimension on `embedding::vector(<dims>)`.
//!
//! Every other statement is written once for both.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    knowledge::{
        Chunk, ChunkHit, Document, DocumentStatus, Job, JobKind, JobStatus, NewChunk, NewDocument,
        NewJob, NewVectorStore, VectorStore,
    },
    store::{KnowledgeStore, StoreError, StoreResult},
};
use serde_json::Value;
use sqlx::{AssertSqlSafe, types::Json};

use crate::{Backend, Db, Pool, store_error, stored_time, with_pool, with_writer};

/// Registers sqlite-vec with the bundled SQLite, for every connection opened afterwards.
pub(crate) fn register_sqlite_vec() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vec_init` is the extension's entry point with the signature
        // SQLite expects of an auto extension; it is registered once, before any
        // connection is opened by this process.
        unsafe {
            #[allow(clippy::missing_transmute_annotations)]
            libsqlite3_sys::sqlite3_auto_extension(Some(std::mem::transmute(
                sqlite_vec::sqlite3_vec_init as *const (),
            )));
        }
    });
}

macro_rules! store_columns {
    () => {
        "s.id, s.slug, s.title, s.description, s.metadata, s.embedding_model_id, s.dimensions,
         s.chunk_tokens, s.chunk_overlap, s.protected, s.created_at, s.updated_at,
         (SELECT COUNT(*) FROM vector_documents d WHERE d.store_id = s.id) AS documents_count"
    };
}

macro_rules! document_columns {
    () => {
        "id, store_id, doc_id, title, source, filename, mime_type, size, raw_json, metadata, status, error,
         chunk_count, created_at, updated_at"
    };
}

macro_rules! job_columns {
    () => {
        "id, kind, store_id, document_id, status, attempts, max_attempts, run_after, lease_until, worker,
         done, total, error, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct StoreRow {
    id: i64,
    slug: String,
    title: Option<String>,
    description: Option<String>,
    metadata: Json<Value>,
    embedding_model_id: Option<i64>,
    dimensions: Option<i32>,
    chunk_tokens: i32,
    chunk_overlap: i32,
    protected: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    documents_count: i64,
}

impl From<StoreRow> for VectorStore {
    fn from(r: StoreRow) -> Self {
        VectorStore {
            id: r.id,
            slug: r.slug,
            title: r.title,
            description: r.description,
            metadata: r.metadata.0,
            embedding_model_id: r.embedding_model_id,
            dimensions: r.dimensions,
            chunk_tokens: r.chunk_tokens,
            chunk_overlap: r.chunk_overlap,
            protected: r.protected,
            documents_count: r.documents_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: i64,
    store_id: i64,
    doc_id: String,
    title: Option<String>,
    source: String,
    filename: Option<String>,
    mime_type: Option<String>,
    size: Option<i64>,
    raw_json: Option<Json<Value>>,
    metadata: Json<Value>,
    status: String,
    error: Option<String>,
    chunk_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DocumentRow> for Document {
    fn from(r: DocumentRow) -> Self {
        Document {
            id: r.id,
            store_id: r.store_id,
            doc_id: r.doc_id,
            title: r.title,
            source: r.source,
            filename: r.filename,
            mime_type: r.mime_type,
            size: r.size,
            raw_json: r.raw_json.map(|j| j.0),
            metadata: r.metadata.0,
            status: DocumentStatus::parse(&r.status).unwrap_or(DocumentStatus::Failed),
            error: r.error,
            chunk_count: r.chunk_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    kind: String,
    store_id: i64,
    document_id: Option<i64>,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_after: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
    worker: Option<String>,
    done: i32,
    total: i32,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<JobRow> for Job {
    fn from(r: JobRow) -> Self {
        Job {
            id: r.id,
            kind: JobKind::parse(&r.kind).unwrap_or(JobKind::Ingest),
            store_id: r.store_id,
            document_id: r.document_id,
            status: JobStatus::parse(&r.status).unwrap_or(JobStatus::Failed),
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_after: r.run_after,
            lease_until: r.lease_until,
            worker: r.worker,
            done: r.done,
            total: r.total,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A vector as sqlite-vec reads it: little-endian `f32`s.
fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector as pgvector reads it: `[1,2,3]`.
fn vector_text(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 10 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let x = if x.is_finite() { *x } else { 0.0 };
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

fn check_dims(dims: i32) -> StoreResult<()> {
    if (1..=16_000).contains(&dims) {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "unsupported vector dimension {dims}"
        )))
    }
}

/// The dimension shared by `chunks`' vectors; a mix is refused.
fn chunks_dims(chunks: &[NewChunk]) -> StoreResult<Option<i32>> {
    let mut dims = None;
    for chunk in chunks {
        if let Some(v) = &chunk.embedding {
            let d = v.len() as i32;
            match dims {
                None => dims = Some(d),
                Some(seen) if seen != d => {
                    return Err(StoreError::Conflict {
                        constraint: "vector_dimensions".into(),
                    });
                }
                _ => {}
            }
        }
    }
    if let Some(d) = dims {
        check_dims(d)?;
    }
    Ok(dims)
}

/// SQLite keeps a dimension's vectors as bits in `vec0` (one bit per dimension, compared by
/// Hamming distance) when it can: a scan of 48 bytes per chunk instead of 1,536 finds the
/// candidates, and their exact similarity comes from the float vectors in
/// `vector_chunks.embedding`. Dimensions that are not a multiple of 8 keep floats in `vec0`.
fn sqlite_bits(dims: i32) -> bool {
    dims % 8 == 0
}

/// SQLite: the statement that adds a chunk's vector to its `vec0` table (`$1` chunk id,
/// `$2` store id, `$3` the float vector).
fn sqlite_vec_insert_sql(dims: i32) -> String {
    if sqlite_bits(dims) {
        format!(
            "INSERT INTO vec_chunks_{dims} (rowid, store_id, embedding_bits) VALUES ($1, $2, vec_quantize_binary($3))"
        )
    } else {
        format!("INSERT INTO vec_chunks_{dims} (rowid, store_id, embedding) VALUES ($1, $2, $3)")
    }
}

/// The chunk insert, with its vector in the dialect's form (`$7`).
fn chunk_insert_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "INSERT INTO vector_chunks (store_id, document_id, chunk_index, text, metadata, dims, embedding)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        }
        Backend::Postgres => {
            "INSERT INTO vector_chunks (store_id, document_id, chunk_index, text, metadata, dims, embedding)
             VALUES ($1, $2, $3, $4, $5, $6, $7::vector) RETURNING id"
        }
    }
}

/// PostgreSQL: the name of a store's HNSW index for a dimension.
fn pg_index_name(store_id: i64, dims: i32) -> String {
    format!("vector_chunks_hnsw_s{store_id}_{dims}")
}

/// SQLite: the `vec0` table of a dimension and the triggers that empty it with its chunks.
fn sqlite_vec_table_sql(dims: i32) -> String {
    let column = if sqlite_bits(dims) {
        format!("embedding_bits bit[{dims}]")
    } else {
        format!("embedding float[{dims}] distance_metric=cosine")
    };
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS vec_chunks_{dims} USING vec0 (store_id INTEGER PARTITION KEY, {column});
         CREATE TRIGGER IF NOT EXISTS vec_chunks_{dims}_delete AFTER DELETE ON vector_chunks
             WHEN old.dims = {dims} BEGIN DELETE FROM vec_chunks_{dims} WHERE rowid = old.id; END;
         CREATE TRIGGER IF NOT EXISTS vec_chunks_{dims}_undim AFTER UPDATE OF dims ON vector_chunks
             WHEN old.dims = {dims} AND new.dims IS NOT {dims} BEGIN DELETE FROM vec_chunks_{dims} WHERE rowid = old.id; END"
    )
}

impl Db {
    /// Makes sure the vector index for `dims` exists (once per process and dimension).
    async fn ensure_vector_index(&self, store_id: i64, dims: i32) -> StoreResult<()> {
        check_dims(dims)?;
        // SQLite's tables are per dimension; PostgreSQL's indexes per store and dimension.
        let key = match self.backend {
            Backend::Sqlite => (0, dims),
            Backend::Postgres => (store_id, dims),
        };
        if self
            .vector_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        match &self.pool {
            Pool::Sqlite { write, lane, .. } => {
                let _lane = lane.acquire().await;
                sqlx::raw_sql(AssertSqlSafe(sqlite_vec_table_sql(dims)))
                    .execute(write)
                    .await
                    .map_err(store_error)?;
            }
            Pool::Postgres(pool) => {
                // One HNSW graph per store: a search walks its own store's graph, with no
                // other store's chunks to filter out. pgvector indexes at most 2,000
                // dimensions with HNSW; larger vectors are searched exactly. Built
                // concurrently: the build reads the whole table, and other stores' writes
                // must not wait for it.
                if dims <= 2000 {
                    let sql = format!(
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON vector_chunks
                         USING hnsw ((embedding::vector({dims})) vector_cosine_ops)
                         WHERE store_id = {store_id} AND dims = {dims}",
                        pg_index_name(store_id, dims)
                    );
                    if let Err(err) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await {
                        // Two replicas creating it at once: one wins, the other sees it.
                        let exists =
                            matches!(&err, sqlx::Error::Database(e) if e.is_unique_violation());
                        if !exists {
                            return Err(store_error(err));
                        }
                    }
                }
            }
        }
        self.vector_indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }
}

/// Records the store's vector dimension (`$1`) on its first vectors; changes nothing when
/// the store already holds vectors of another dimension (the caller then refuses).
const SETTLE_DIMENSIONS: &str = "UPDATE vector_stores SET dimensions = $1
     WHERE id = $2 AND (dimensions IS NULL OR dimensions = $1) AND embedding_model_id IS NOT DISTINCT FROM $3";

/// Settles the store's dimension for vectors of `$dims` made by the model `$model`, in the
/// caller's transaction, or fails with `vector_model` (the store's model changed since they
/// were made) or `vector_dimensions`. On PostgreSQL the row lock this takes orders the write
/// with a model change: whichever commits second sees the first.
macro_rules! settle_vectors {
    ($tx:expr, $store_id:expr, $dims:expr, $model:expr) => {
        async {
            let settled = sqlx::query(SETTLE_DIMENSIONS)
                .bind($dims)
                .bind($store_id)
                .bind($model)
                .execute(&mut *$tx)
                .await?;
            if settled.rows_affected() == 0 {
                let current: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT embedding_model_id FROM vector_stores WHERE id = $1",
                )
                .bind($store_id)
                .fetch_optional(&mut *$tx)
                .await?;
                let reason = if current.flatten() == $model {
                    "vector_dimensions"
                } else {
                    "vector_model"
                };
                return Err(sqlx::Error::Protocol(reason.into()));
            }
            Ok::<_, sqlx::Error>(())
        }
    };
}

/// Marks a store's chunks as changed (`$1` the store).
const BUMP: &str = "UPDATE vector_stores SET vectors_version = vectors_version + 1 WHERE id = $1";

/// Inserts `chunks` of a document, their vectors, and settles the store's dimension; in
/// the caller's transaction `$tx` (the body is compiled once per backend).
macro_rules! insert_chunks {
    ($self:expr, $tx:expr, $store_id:expr, $document_id:expr, $chunks:expr, $dims:expr, $model:expr) => {
        async {
            sqlx::query(BUMP).bind($store_id).execute(&mut *$tx).await?;
            if let Some(dims) = $dims {
                settle_vectors!($tx, $store_id, dims, $model).await?;
            }
            let vec_sql = match $self.backend {
                Backend::Sqlite => $dims.map(sqlite_vec_insert_sql),
                Backend::Postgres => None,
            };
            for chunk in $chunks {
                let chunk: &NewChunk = chunk;
                let query = sqlx::query_scalar(chunk_insert_sql($self.backend))
                    .bind($store_id)
                    .bind($document_id)
                    .bind(chunk.index)
                    .bind(&chunk.text)
                    .bind(Json(&chunk.metadata))
                    .bind(chunk.embedding.as_ref().map(|v| v.len() as i32));
                let query = match $self.backend {
                    Backend::Sqlite => query.bind(chunk.embedding.as_deref().map(vector_blob)),
                    Backend::Postgres => query.bind(chunk.embedding.as_deref().map(vector_text)),
                };
                let id: i64 = query.fetch_one(&mut *$tx).await?;
                if let (Some(v), Some(sql)) = (&chunk.embedding, &vec_sql) {
                    sqlx::query(AssertSqlSafe(sql.clone()))
                        .bind(id)
                        .bind($store_id)
                        .bind(vector_blob(v))
                        .execute(&mut *$tx)
                        .await?;
                }
            }
            Ok::<_, sqlx::Error>(())
        }
    };
}

/// Maps the dimension refusal raised inside [`insert_chunks!`].
fn chunk_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Protocol(message)
            if message == "vector_dimensions" || message == "vector_model" =>
        {
            StoreError::Conflict {
                constraint: message,
            }
        }
        other => store_error(other),
    }
}

/// A knowledge job by its id: the primary key.
pub(crate) const KNOWLEDGE_JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM knowledge_jobs WHERE id = $1"
);

/// A store's latest jobs: `knowledge_jobs_store_idx`.
pub(crate) const STORE_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM knowledge_jobs WHERE store_id = $1 ORDER BY id DESC LIMIT 100"
);

/// Claims the oldest job that is ready (queued and due, running past its lease, or held
/// past its upload's patience): the partial index `knowledge_jobs_open_idx` holds only
/// unfinished jobs, so finished ones never slow a claim. `$1` worker, `$2` lease end,
/// `$3` now, `$4` the held jobs' limit.
pub(crate) fn claim_job_sql(backend: Backend) -> String {
    // PostgreSQL: replicas claiming at once skip each other's rows. SQLite: one writer.
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    format!(
        "UPDATE knowledge_jobs SET status = 'running', attempts = attempts + 1, worker = $1, lease_until = $2, updated_at = $3
         WHERE id = (SELECT id FROM knowledge_jobs
                     WHERE status IN ('queued', 'running', 'held')
                       AND ((status = 'queued' AND run_after <= $3) OR (status = 'running' AND lease_until < $3)
                            OR (status = 'held' AND created_at < $4))
                     ORDER BY id LIMIT 1 {lock})
         RETURNING {}",
        job_columns!()
    )
}

#[async_trait]
impl KnowledgeStore for Db {
    async fn insert_vector_store(
        &self,
        store: &NewVectorStore,
        now: DateTime<Utc>,
    ) -> StoreResult<VectorStore> {
        let id: i64 = with_writer!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO vector_stores (slug, title, description, metadata, embedding_model_id, dimensions,
                     chunk_tokens, chunk_overlap, protected, vectors_version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $10) RETURNING id",
            )
            .bind(&store.slug)
            .bind(&store.title)
            .bind(&store.description)
            .bind(Json(&store.metadata))
            .bind(store.embedding_model_id)
            .bind(store.chunk_tokens)
            .bind(store.chunk_overlap)
            .bind(store.protected)
            // Starts from the clock, so a store that reuses a deleted one's id never
            // matches the old store's cached bits.
            .bind(now.timestamp_micros())
            .bind(stored_time(now))
            .fetch_one(pool)
            .await
        })
        .map_err(store_error)?;
        self.vector_store_by_id(id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn vector_stores(&self) -> StoreResult<Vec<VectorStore>> {
        let sql = concat!(
            "SELECT ",
            store_columns!(),
            " FROM vector_stores s ORDER BY s.slug"
        );
        let rows: Vec<StoreRow> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(store_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn vector_store(&self, slug: &str) -> StoreResult<Option<VectorStore>> {
        let sql = concat!(
            "SELECT ",
            store_columns!(),
            " FROM vector_stores s WHERE s.slug = $1"
        );
        let row: Option<StoreRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(slug).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn vector_store_by_id(&self, id: i64) -> StoreResult<Option<VectorStore>> {
        let sql = concat!(
            "SELECT ",
            store_columns!(),
            " FROM vector_stores s WHERE s.id = $1"
        );
        let row: Option<StoreRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn update_vector_store(
        &self,
        store: &VectorStore,
        drop_vectors: bool,
        job: Option<&NewJob>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<VectorStore>> {
        let now = stored_time(now);
        let updated = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE vector_stores SET title = $2, description = $3, metadata = $4, embedding_model_id = $5,
                         chunk_tokens = $6, chunk_overlap = $7, protected = $8, updated_at = $9
                     WHERE id = $1",
                )
                .bind(store.id)
                .bind(&store.title)
                .bind(&store.description)
                .bind(Json(&store.metadata))
                .bind(store.embedding_model_id)
                .bind(store.chunk_tokens)
                .bind(store.chunk_overlap)
                .bind(store.protected)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if drop_vectors {
                    // SQLite: the `undim` trigger takes the vectors out of `vec0`.
                    let clear = match self.backend {
                        Backend::Sqlite => "UPDATE vector_chunks SET dims = NULL WHERE store_id = $1 AND dims IS NOT NULL",
                        Backend::Postgres => "UPDATE vector_chunks SET dims = NULL, embedding = NULL WHERE store_id = $1 AND dims IS NOT NULL",
                    };
                    sqlx::query(clear).bind(store.id).execute(&mut *tx).await?;
                    sqlx::query("UPDATE vector_stores SET dimensions = NULL, vectors_version = vectors_version + 1 WHERE id = $1")
                        .bind(store.id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE knowledge_jobs SET status = 'failed', error = 'superseded by a newer re-embedding', updated_at = $2
                                 WHERE store_id = $1 AND kind = 'reembed' AND status IN ('queued', 'running')")
                        .bind(store.id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(job) = job {
                    sqlx::query(
                        "INSERT INTO knowledge_jobs (kind, store_id, document_id, status, attempts, max_attempts, run_after,
                             lease_until, worker, done, total, error, created_at, updated_at)
                         VALUES ($1, $2, NULL, 'queued', 0, $3, $4, NULL, NULL, 0, 0, NULL, $4, $4)",
                    )
                    .bind(job.kind.as_str())
                    .bind(job.store_id)
                    .bind(job.max_attempts)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(true)
            }
            .await
        })
        .map_err(store_error)?;
        if !updated {
            return Ok(None);
        }
        self.vector_store_by_id(store.id).await
    }

    async fn delete_vector_store(&self, id: i64) -> StoreResult<bool> {
        if let Pool::Postgres(pool) = &self.pool {
            // The store's HNSW indexes go with it (ids are never reused on PostgreSQL).
            let names: Vec<(String,)> = sqlx::query_as(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'vector_chunks' AND indexname LIKE $1",
            )
            .bind(format!("vector_chunks_hnsw_s{id}\\_%"))
            .fetch_all(pool)
            .await
            .map_err(store_error)?;
            for (name,) in names {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
        }
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM vector_stores WHERE id = $1").bind(id).execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    #[allow(clippy::too_many_arguments)] // one row and its parts, written in one transaction
    async fn put_document(
        &self,
        store_id: i64,
        doc: &NewDocument,
        status: DocumentStatus,
        chunks: &[NewChunk],
        embedded_by: Option<i64>,
        job: Option<&NewJob>,
        now: DateTime<Utc>,
    ) -> StoreResult<(Document, Option<i64>)> {
        let dims = chunks_dims(chunks)?;
        if let Some(d) = dims {
            self.ensure_vector_index(store_id, d).await?;
        }
        let now = stored_time(now);
        let sql = concat!(
            "INSERT INTO vector_documents (store_id, doc_id, title, source, filename, mime_type, size, raw_json, metadata,
                 status, error, chunk_count, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $12) RETURNING ",
            document_columns!()
        );
        let (row, job_id) = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                // Its chunks, vectors and jobs go with it (cascades and triggers).
                sqlx::query("DELETE FROM vector_documents WHERE store_id = $1 AND doc_id = $2")
                    .bind(store_id)
                    .bind(&doc.doc_id)
                    .execute(&mut *tx)
                    .await?;
                let row: DocumentRow = sqlx::query_as(sql)
                    .bind(store_id)
                    .bind(&doc.doc_id)
                    .bind(&doc.title)
                    .bind(doc.source)
                    .bind(&doc.filename)
                    .bind(&doc.mime_type)
                    .bind(doc.size)
                    .bind(doc.raw_json.as_ref().map(Json))
                    .bind(Json(&doc.metadata))
                    .bind(status.as_str())
                    .bind(chunks.len() as i32)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                insert_chunks!(self, tx, store_id, row.id, chunks, dims, embedded_by).await?;
                let job_id: Option<i64> = match job {
                    Some(job) => Some(
                        sqlx::query_scalar(
                            "INSERT INTO knowledge_jobs (kind, store_id, document_id, status, attempts, max_attempts, run_after,
                                 lease_until, worker, done, total, error, created_at, updated_at)
                             VALUES ($1, $2, $3, $4, 0, $5, $6, NULL, NULL, 0, 0, NULL, $6, $6) RETURNING id",
                        )
                        .bind(job.kind.as_str())
                        .bind(store_id)
                        .bind(row.id)
                        .bind(if job.held { "held" } else { "queued" })
                        .bind(job.max_attempts)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                    None => None,
                };
                tx.commit().await?;
                Ok::<_, sqlx::Error>((row, job_id))
            }
            .await
        })
        .map_err(chunk_error)?;
        Ok((row.into(), job_id))
    }

    async fn set_document_chunks(
        &self,
        document_id: i64,
        chunks: &[NewChunk],
        embedded_by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let dims = chunks_dims(chunks)?;
        if let Some(d) = dims {
            let store_id = self
                .document_by_id(document_id)
                .await?
                .ok_or(StoreError::NotFound)?
                .store_id;
            self.ensure_vector_index(store_id, d).await?;
        }
        let now = stored_time(now);
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                let store_id: Option<i64> = sqlx::query_scalar(
                    "UPDATE vector_documents SET status = 'ready', error = NULL, chunk_count = $2, updated_at = $3
                     WHERE id = $1 RETURNING store_id",
                )
                .bind(document_id)
                .bind(chunks.len() as i32)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(store_id) = store_id else {
                    return Err(sqlx::Error::RowNotFound);
                };
                sqlx::query("DELETE FROM vector_chunks WHERE document_id = $1")
                    .bind(document_id)
                    .execute(&mut *tx)
                    .await?;
                insert_chunks!(self, tx, store_id, document_id, chunks, dims, embedded_by).await?;
                tx.commit().await
            }
            .await
        })
        .map_err(chunk_error)
    }

    async fn set_document_status(
        &self,
        document_id: i64,
        status: DocumentStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE vector_documents SET status = $2, error = $3, updated_at = $4 WHERE id = $1")
                .bind(document_id)
                .bind(status.as_str())
                .bind(error)
                .bind(stored_time(now))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(())
    }

    async fn documents(&self, store_id: i64) -> StoreResult<Vec<Document>> {
        let sql = concat!(
            "SELECT ",
            document_columns!(),
            " FROM vector_documents WHERE store_id = $1 ORDER BY doc_id"
        );
        let rows: Vec<DocumentRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(store_id).fetch_all(pool).await)
                .map_err(store_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn document(&self, store_id: i64, doc_id: &str) -> StoreResult<Option<Document>> {
        let sql = concat!(
            "SELECT ",
            document_columns!(),
            " FROM vector_documents WHERE store_id = $1 AND doc_id = $2"
        );
        let row: Option<DocumentRow> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(store_id).bind(doc_id).fetch_optional(pool).await
        })
        .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn document_by_id(&self, id: i64) -> StoreResult<Option<Document>> {
        let sql = concat!(
            "SELECT ",
            document_columns!(),
            " FROM vector_documents WHERE id = $1"
        );
        let row: Option<DocumentRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn document_chunks(&self, document_id: i64) -> StoreResult<Vec<Chunk>> {
        let rows: Vec<(i64, i64, i32, String, Json<Value>, Option<i32>)> =
            with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT id, document_id, chunk_index, text, metadata, dims FROM vector_chunks
                     WHERE document_id = $1 ORDER BY chunk_index",
                )
                .bind(document_id)
                .fetch_all(pool)
                .await
            })
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, document_id, chunk_index, text, metadata, dims)| Chunk {
                    id,
                    document_id,
                    chunk_index,
                    text,
                    metadata: metadata.0,
                    dims,
                },
            )
            .collect())
    }

    async fn delete_document(&self, document_id: i64) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE vector_stores SET vectors_version = vectors_version + 1
                             WHERE id = (SELECT store_id FROM vector_documents WHERE id = $1)")
                    .bind(document_id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM vector_documents WHERE id = $1")
                    .bind(document_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok::<_, sqlx::Error>(done)
            }
            .await
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn dense_search(
        &self,
        store_id: i64,
        dims: i32,
        vector: &[f32],
        limit: usize,
        documents: Option<&[i64]>,
    ) -> StoreResult<Vec<(i64, f64)>> {
        check_dims(dims)?;
        let limit = limit.clamp(1, 4096) as i64;
        if let Some(documents) = documents {
            return self
                .exact_dense(dims, vector, Scope::Documents(documents), limit)
                .await;
        }
        let mut found: Vec<(i64, f64)> = match &self.pool {
            Pool::Sqlite { read, .. } => {
                // Candidates by Hamming distance on the bits (8 per result), then the
                // exact similarity of each from its float vector.
                let candidates: Vec<i64> = if sqlite_bits(dims) {
                    let index = self.bit_index(read, store_id, dims).await?;
                    index.nearest(vector, (limit as usize * 8).min(4096))
                } else {
                    let sql = format!(
                        "SELECT rowid FROM vec_chunks_{dims} WHERE embedding MATCH $1 AND k = $2 AND store_id = $3"
                    );
                    let rows: Result<Vec<(i64,)>, sqlx::Error> = sqlx::query_as(AssertSqlSafe(sql))
                        .bind(vector_blob(vector))
                        .bind(limit)
                        .bind(store_id)
                        .fetch_all(read)
                        .await;
                    match rows {
                        Ok(rows) => rows.into_iter().map(|(id,)| id).collect(),
                        // No vector of this dimension was ever stored.
                        Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => {
                            Vec::new()
                        }
                        Err(err) => return Err(store_error(err)),
                    }
                };
                if candidates.is_empty() {
                    return Ok(Vec::new());
                }
                self.exact_dense(dims, vector, Scope::Chunks(&candidates), limit)
                    .await?
            }
            Pool::Postgres(pool) if dims <= 2000 => {
                // The store and dimension as literals, so the planner matches the
                // store's partial HNSW index.
                let sql = format!(
                    "SELECT id, 1 - ((embedding::vector({dims})) <=> $1::vector({dims})) AS similarity FROM vector_chunks
                     WHERE dims = {dims} AND store_id = {store_id}
                     ORDER BY (embedding::vector({dims})) <=> $1::vector({dims}) LIMIT $2"
                );
                async {
                    let mut tx = pool.begin().await?;
                    // Enough candidates from the graph.
                    sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
                        .bind(limit.clamp(40, 1000).to_string())
                        .execute(&mut *tx)
                        .await?;
                    let rows: Vec<(i64, f64)> = sqlx::query_as(AssertSqlSafe(sql))
                        .bind(vector_text(vector))
                        .bind(limit)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(rows)
                }
                .await
                .map_err(store_error)?
            }
            Pool::Postgres(_) => {
                return self
                    .exact_dense(dims, vector, Scope::Store(store_id), limit)
                    .await;
            }
        };
        // Relaxed order: the scan may return neighbours slightly out of order.
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(found)
    }

    async fn text_search(
        &self,
        store_id: i64,
        terms: &[String],
        limit: usize,
        documents: Option<&[i64]>,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let terms: Vec<&String> = terms
            .iter()
            .filter(|t| t.chars().all(char::is_alphanumeric) && !t.is_empty())
            .collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let limit = limit.clamp(1, 4096) as i64;
        if self.backend == Backend::Postgres {
            return self
                .pg_text_search(store_id, &terms, limit, documents)
                .await;
        }
        // Any of the words; FTS5 ranks by BM25 (lower is better, so negated).
        let query = terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let rows: Vec<(i64, f64)> = with_pool!(self, pool => {
            let mut b = sqlx::QueryBuilder::new(
                // CROSS JOIN keeps the full-text index as the outer loop: one scan of the
                // matches, each joined by primary key (the planner would otherwise walk the
                // store's chunks and search the index once per chunk).
                "SELECT c.id, -bm25(vector_chunks_fts) AS score FROM vector_chunks_fts
                 CROSS JOIN vector_chunks c ON c.id = vector_chunks_fts.rowid
                 WHERE vector_chunks_fts MATCH ",
            );
            b.push_bind(query.clone()).push(" AND c.store_id = ").push_bind(store_id);
            if let Some(documents) = documents {
                let (open, close) = id_list(self.backend);
                b.push(" AND c.document_id").push(open).push_bind(id_json(documents)).push(close);
            }
            b.push(" ORDER BY score DESC, c.id LIMIT ").push_bind(limit);
            b.build_query_as().fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows)
    }

    async fn dense_scores(
        &self,
        dims: i32,
        vector: &[f32],
        chunks: &[i64],
    ) -> StoreResult<Vec<(i64, f64)>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        self.exact_dense(dims, vector, Scope::Chunks(chunks), chunks.len() as i64)
            .await
    }

    async fn chunk_hits(&self, chunks: &[i64]) -> StoreResult<Vec<ChunkHit>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            i32,
            String,
            Json<Value>,
            Json<Value>,
        );
        let rows: Vec<Row> = with_pool!(self, pool => {
            let mut b = sqlx::QueryBuilder::new(
                "SELECT c.id, c.document_id, d.doc_id, d.title, d.filename, c.chunk_index, c.text, c.metadata, d.metadata
                 FROM vector_chunks c JOIN vector_documents d ON d.id = c.document_id WHERE c.id",
            );
            let (open, close) = id_list(self.backend);
            b.push(open).push_bind(id_json(chunks)).push(close);
            b.build_query_as().fetch_all(pool).await
        })
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    chunk_id,
                    document_id,
                    doc_id,
                    document_title,
                    filename,
                    chunk_index,
                    text,
                    metadata,
                    document_metadata,
                )| ChunkHit {
                    chunk_id,
                    document_id,
                    doc_id,
                    document_title,
                    filename,
                    chunk_index,
                    text,
                    metadata: metadata.0,
                    document_metadata: document_metadata.0,
                },
            )
            .collect())
    }

    async fn count_store_chunks(&self, store_id: i64) -> StoreResult<i64> {
        with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM vector_chunks WHERE store_id = $1").bind(store_id).fetch_one(pool).await
        })
        .map_err(store_error)
    }

    async fn count_chunks_without_vectors(&self, store_id: i64) -> StoreResult<i64> {
        with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM vector_chunks WHERE store_id = $1 AND dims IS NULL")
                .bind(store_id)
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)
    }

    async fn chunks_without_vectors(
        &self,
        store_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>> {
        with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, text FROM vector_chunks WHERE store_id = $1 AND dims IS NULL AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(store_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })
        .map_err(store_error)
    }

    async fn set_chunk_vectors(
        &self,
        store_id: i64,
        vectors: &[(i64, Vec<f32>)],
        embedded_by: i64,
    ) -> StoreResult<()> {
        let Some(dims) = vectors.first().map(|(_, v)| v.len() as i32) else {
            return Ok(());
        };
        if vectors.iter().any(|(_, v)| v.len() as i32 != dims) {
            return Err(StoreError::Conflict {
                constraint: "vector_dimensions".into(),
            });
        }
        self.ensure_vector_index(store_id, dims).await?;
        let (claim_sql, vec_sql) = match self.backend {
            Backend::Sqlite => (
                "UPDATE vector_chunks SET dims = $1, embedding = $4 WHERE id = $2 AND store_id = $3 AND dims IS NULL",
                Some(sqlite_vec_insert_sql(dims)),
            ),
            Backend::Postgres => (
                "UPDATE vector_chunks SET dims = $1, embedding = $4::vector WHERE id = $2 AND store_id = $3 AND dims IS NULL",
                None,
            ),
        };
        with_writer!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                settle_vectors!(tx, store_id, dims, Some(embedded_by)).await?;
                sqlx::query(BUMP).bind(store_id).execute(&mut *tx).await?;
                for (id, v) in vectors {
                    // Only a chunk still without a vector (a concurrent job may have set it).
                    let query = sqlx::query(claim_sql).bind(dims).bind(id).bind(store_id);
                    let query = match self.backend {
                        Backend::Sqlite => query.bind(vector_blob(v)),
                        Backend::Postgres => query.bind(vector_text(v)),
                    };
                    if query.execute(&mut *tx).await?.rows_affected() == 0 {
                        continue;
                    }
                    if let Some(sql) = &vec_sql {
                        sqlx::query(AssertSqlSafe(sql.clone()))
                            .bind(id)
                            .bind(store_id)
                            .bind(vector_blob(v))
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await
            }
            .await
        })
        .map_err(chunk_error)
    }

    async fn claim_knowledge_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> StoreResult<Option<Job>> {
        let now = stored_time(now);
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let sql = claim_job_sql(self.backend);
        let row: Option<JobRow> = with_writer!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql.clone()))
                .bind(worker)
                .bind(until)
                .bind(now)
                // A job held for its bytes longer than this was left by a stopped upload:
                // it runs, and fails cleanly if the bytes never landed.
                .bind(now - chrono::Duration::seconds(60))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn release_knowledge_job(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE knowledge_jobs SET status = 'queued', run_after = $2, updated_at = $2 WHERE id = $1 AND status = 'held'")
                .bind(id)
                .bind(stored_time(now))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(())
    }

    async fn update_knowledge_job(&self, job: &Job) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE knowledge_jobs SET status = $3, run_after = $4, lease_until = $5, done = $6, total = $7, error = $8,
                     updated_at = $9
                 WHERE id = $1 AND attempts = $2 AND worker IS NOT DISTINCT FROM $10 AND status = 'running'",
            )
            .bind(job.id)
            .bind(job.attempts)
            .bind(job.status.as_str())
            .bind(stored_time(job.run_after))
            .bind(job.lease_until.map(stored_time))
            .bind(job.done)
            .bind(job.total)
            .bind(&job.error)
            .bind(stored_time(job.updated_at))
            .bind(&job.worker)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn knowledge_job(&self, id: i64) -> StoreResult<Option<Job>> {
        let row: Option<JobRow> =
            with_pool!(self, pool => sqlx::query_as(KNOWLEDGE_JOB).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        Ok(row.map(Into::into))
    }

    async fn knowledge_jobs(&self, store_id: i64) -> StoreResult<Vec<Job>> {
        let rows: Vec<JobRow> =
            with_pool!(self, pool => sqlx::query_as(STORE_JOBS).bind(store_id).fetch_all(pool).await)
                .map_err(store_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

impl Db {
    /// The store's bits for `dims`, rebuilt from `vec0` when its chunks changed.
    async fn bit_index(
        &self,
        read: &sqlx::SqlitePool,
        store_id: i64,
        dims: i32,
    ) -> StoreResult<std::sync::Arc<crate::vector_index::BitIndex>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT vectors_version FROM vector_stores WHERE id = $1")
                .bind(store_id)
                .fetch_optional(read)
                .await
                .map_err(store_error)?;
        let version = version.ok_or(StoreError::NotFound)?;
        if let Some(index) = self.bit_indexes.get(store_id, dims, version) {
            return Ok(index);
        }
        // One read transaction: the version and the bits from the same snapshot.
        let mut tx = read.begin().await.map_err(store_error)?;
        let version: i64 =
            sqlx::query_scalar("SELECT vectors_version FROM vector_stores WHERE id = $1")
                .bind(store_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
        let sql =
            format!("SELECT rowid, embedding_bits FROM vec_chunks_{dims} WHERE store_id = $1");
        let rows: Vec<(i64, Vec<u8>)> = match sqlx::query_as(AssertSqlSafe(sql))
            .bind(store_id)
            .fetch_all(&mut *tx)
            .await
        {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => Vec::new(),
            Err(err) => return Err(store_error(err)),
        };
        let _ = tx.commit().await;
        let index = std::sync::Arc::new(crate::vector_index::BitIndex::new(
            version,
            dims as usize,
            rows,
        ));
        self.bit_indexes.put(store_id, dims, index.clone());
        Ok(index)
    }
}

/// `IN` over a list of ids bound as one JSON array (see [`id_json`]), so a list of any
/// length takes one parameter (SQLite allows 32,766, PostgreSQL 65,535).
fn id_list(backend: Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => (" IN (SELECT value FROM json_each(", "))"),
        Backend::Postgres => (
            " IN (SELECT value::bigint FROM jsonb_array_elements_text(",
            "::jsonb))",
        ),
    }
}

fn id_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialise")
}

/// Document frequencies past this are not counted further (such words weigh little).
const PG_DF_CAP: i64 = 10_000;

impl Db {
    /// PostgreSQL full text with the rarity of words taken into account, as BM25 does
    /// (`ts_rank_cd` alone has no notion of it): a chunk scores the sum of the inverse
    /// document frequencies of the query words it holds, plus up to 1 from `ts_rank_cd`
    /// for how densely it holds them.
    async fn pg_text_search(
        &self,
        store_id: i64,
        terms: &[&String],
        limit: i64,
        documents: Option<&[i64]>,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let words: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
        // The store's chunk count and each word's chunk count, in one round trip.
        let frequencies: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT t.term, (SELECT COUNT(*) FROM (SELECT 1 FROM vector_chunks c
                 WHERE c.store_id + 0 = $1 AND c.tsv @@ to_tsquery('simple', switchyard_unaccent(t.term)) LIMIT $3) s),
                 (SELECT COALESCE(SUM(chunk_count), 0) FROM vector_documents WHERE store_id = $1)::bigint
             FROM unnest($2::text[]) AS t(term)",
        )
        .bind(store_id)
        .bind(&words)
        .bind(PG_DF_CAP)
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
        let total = frequencies.first().map_or(0, |f| f.2) as f64;
        let mut b = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT c.id, (");
        for (i, (term, df, _)) in frequencies.iter().enumerate() {
            let df = *df as f64;
            let idf = ((total - df + 0.5) / (df + 0.5) + 1.0).ln().max(0.0);
            if i > 0 {
                b.push(" + ");
            }
            b.push("CASE WHEN c.tsv @@ to_tsquery('simple', switchyard_unaccent(")
                .push_bind(term.clone())
                .push(")) THEN ")
                .push_bind(idf)
                .push("::float8 ELSE 0 END");
        }
        b.push(") + ts_rank_cd(c.tsv, q, 32)::float8 AS score FROM vector_chunks c, to_tsquery('simple', switchyard_unaccent(")
            .push_bind(words.join(" | "))
            // `+ 0`: the store's rows come from the text index's matches, not from a
            // bitmap of the whole store's rows ANDed with them.
            .push(")) q WHERE c.tsv @@ q AND c.store_id + 0 = ")
            .push_bind(store_id);
        if let Some(documents) = documents {
            b.push(" AND c.document_id = ANY(")
                .push_bind(documents.to_vec())
                .push(")");
        }
        b.push(" ORDER BY score DESC, c.id LIMIT ").push_bind(limit);
        b.build_query_as()
            .fetch_all(pool)
            .await
            .map_err(store_error)
    }
}

/// Which chunks an exact similarity scan covers.
enum Scope<'a> {
    Store(i64),
    Documents(&'a [i64]),
    Chunks(&'a [i64]),
}

impl Db {
    /// Cosine similarity computed for every chunk in `scope` (no index), best first.
    async fn exact_dense(
        &self,
        dims: i32,
        vector: &[f32],
        scope: Scope<'_>,
        limit: i64,
    ) -> StoreResult<Vec<(i64, f64)>> {
        check_dims(dims)?;
        let head = match self.backend {
            Backend::Sqlite => "SELECT c.id, 1 - vec_distance_cosine(c.embedding, ".to_string(),
            Backend::Postgres => "SELECT c.id, 1 - (c.embedding <=> ".to_string(),
        };
        let from = match self.backend {
            Backend::Sqlite => format!(
                ") AS similarity FROM vector_chunks c JOIN vec_chunks_{dims} v ON v.rowid = c.id WHERE c.dims = {dims} AND "
            ),
            Backend::Postgres => {
                format!("::vector) AS similarity FROM vector_chunks c WHERE c.dims = {dims} AND ")
            }
        };
        let rows: Result<Vec<(i64, f64)>, sqlx::Error> = with_pool!(self, pool => {
            let mut b = sqlx::QueryBuilder::new(head.clone());
            match self.backend {
                Backend::Sqlite => b.push_bind(vector_blob(vector)),
                Backend::Postgres => b.push_bind(vector_text(vector)),
            };
            b.push(from.clone());
            match &scope {
                // A constant, so PostgreSQL's planner matches the store's partial index.
                Scope::Store(id) => {
                    b.push("c.store_id = ").push_bind(*id);
                }
                Scope::Documents(ids) => {
                    let (open, close) = id_list(self.backend);
                    b.push("c.document_id").push(open).push_bind(id_json(ids)).push(close);
                }
                Scope::Chunks(ids) => {
                    let (open, close) = id_list(self.backend);
                    b.push("c.id").push(open).push_bind(id_json(ids)).push(close);
                }
            }
            b.push(" ORDER BY similarity DESC, c.id LIMIT ").push_bind(limit);
            b.build_query_as().fetch_all(pool).await
        });
        match rows {
            Ok(rows) => Ok(rows),
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => {
                Ok(Vec::new())
            }
            Err(err) => Err(store_error(err)),
        }
    }
}
