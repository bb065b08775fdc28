//! Knowledge bases (the seed's "vector stores"): stores of documents cut into chunks, each
//! chunk indexed for full-text search and, when the store has an embedding model, by its
//! vector; hybrid search over both; durable ingestion jobs.
//!
//! Invariants:
//! - A document's chunks are replaced whole, in one transaction: a search sees the old
//!   chunks or the new ones, never a mix, and re-ingesting a `doc_id` replaces it.
//! - A chunk's vector always comes from its store's current embedding model: changing the
//!   model drops the store's vectors in the same write and re-embeds them in a job, and a
//!   query only meets vectors of its own dimension.
//! - Full-text search works with no embedding model at all; results then say so.

pub mod chunking;
pub mod extract;
pub mod jobs;
pub mod search;

use crate::blobs::Blobs as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{
    Services,
    error::{DomainError, ErrorKind},
    llm::LlmError,
    models::{
        self, ModelError,
        usage::{self, Purpose},
    },
    store::StoreError,
    users::User,
    workflows,
};

pub use jobs::{Job, JobKind, JobStatus, NewJob};

/// The most tokens a file chunk holds by default, and how many the next one repeats.
pub const DEFAULT_CHUNK_TOKENS: i32 = 400;
pub const DEFAULT_CHUNK_OVERLAP: i32 = 60;
/// The default for stores embedded by a local model: sentence-transformers models read 256
/// word pieces (about 200 of our tokens) and ignore the rest.
pub const LOCAL_CHUNK_TOKENS: i32 = 200;
/// The largest file accepted for ingestion.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;
/// Texts per embeddings call.
pub const EMBED_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct VectorStore {
    pub id: i64,
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub metadata: Value,
    /// The registry model that embeds chunks and queries; `None`: full-text search only.
    pub embedding_model_id: Option<i64>,
    /// The dimension of the stored vectors, known after the first embedding.
    pub dimensions: Option<i32>,
    pub chunk_tokens: i32,
    pub chunk_overlap: i32,
    /// A protected store cannot be deleted.
    pub protected: bool,
    pub documents_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewVectorStore {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub metadata: Value,
    pub embedding_model_id: Option<i64>,
    pub chunk_tokens: i32,
    pub chunk_overlap: i32,
    pub protected: bool,
}

/// Fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct VectorStorePatch {
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<Value>,
    pub embedding_model_id: Option<Option<i64>>,
    pub chunk_tokens: Option<i32>,
    pub chunk_overlap: Option<i32>,
    pub protected: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentStatus {
    /// Waiting for its ingestion job.
    Pending,
    /// Being read, cut and embedded.
    Processing,
    Ready,
    /// Ingestion gave up; `error` says why.
    Failed,
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DocumentStatus> {
        Some(match text {
            "pending" => DocumentStatus::Pending,
            "processing" => DocumentStatus::Processing,
            "ready" => DocumentStatus::Ready,
            "failed" => DocumentStatus::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: i64,
    pub store_id: i64,
    pub doc_id: String,
    pub title: Option<String>,
    /// `json` (posted as JSON) or `file` (uploaded).
    pub source: String,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    /// The JSON document as posted (JSON ingestion only).
    pub raw_json: Option<Value>,
    pub metadata: Value,
    pub status: DocumentStatus,
    pub error: Option<String>,
    pub chunk_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewDocument {
    pub doc_id: String,
    pub title: Option<String>,
    pub source: &'static str,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    pub raw_json: Option<Value>,
    pub metadata: Value,
}

/// A chunk to store, with its vector when the store embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub index: i32,
    pub text: String,
    pub metadata: Value,
    pub embedding: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub id: i64,
    pub document_id: i64,
    pub chunk_index: i32,
    pub text: String,
    pub metadata: Value,
    /// The dimension of its vector; `None` when it has none.
    pub dims: Option<i32>,
}

/// A chunk found by a search, with what a citation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkHit {
    pub chunk_id: i64,
    pub document_id: i64,
    pub doc_id: String,
    pub document_title: Option<String>,
    pub filename: Option<String>,
    pub chunk_index: i32,
    pub text: String,
    pub metadata: Value,
    pub document_metadata: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("vector store `{0}` not found")]
    StoreNotFound(String),
    #[error("document `{0}` not found")]
    DocumentNotFound(String),
    #[error("job {0} not found in this store")]
    JobNotFound(i64),
    #[error("a vector store with the slug `{0}` already exists")]
    Exists(String),
    #[error("vector store `{0}` is protected and cannot be deleted")]
    Protected(String),
    #[error("{0}")]
    Invalid(String),
    /// A concurrent change came first; sending the request again succeeds.
    #[error("{0}")]
    Changed(String),
    /// This worker no longer holds the job (its lease ran out and another took it, or it
    /// was superseded); it stops without writing.
    #[error("the job was taken over or superseded")]
    JobLost,
    #[error("{0}")]
    UnsupportedFile(String),
    #[error("the file is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("only administrators manage vector stores")]
    Forbidden,
    #[error("the embedding model failed: {0}")]
    Embedding(#[from] LlmError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KnowledgeError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { constraint } if constraint == "vector_dimensions" => {
                KnowledgeError::Invalid(
                    "the embedding model's vectors differ in dimension from the store's; set the store's model again to re-embed it".into(),
                )
            }
            StoreError::Conflict { constraint } if constraint == "vector_model" => {
                KnowledgeError::Changed(
                    "the store's embedding model changed while the document was embedded; send it again".into(),
                )
            }
            StoreError::Conflict { constraint } if constraint.contains("vector_documents") => {
                KnowledgeError::Changed(
                    "another request wrote a document with this doc_id at the same moment; send it again".into(),
                )
            }
            other => KnowledgeError::Store(other),
        }
    }
}

impl DomainError for KnowledgeError {
    fn kind(&self) -> ErrorKind {
        match self {
            KnowledgeError::StoreNotFound(_)
            | KnowledgeError::DocumentNotFound(_)
            | KnowledgeError::JobNotFound(_) => ErrorKind::NotFound,
            KnowledgeError::Exists(_) | KnowledgeError::Changed(_) => ErrorKind::Conflict,
            KnowledgeError::JobLost => ErrorKind::Conflict,
            KnowledgeError::Protected(_)
            | KnowledgeError::Invalid(_)
            | KnowledgeError::UnsupportedFile(_)
            | KnowledgeError::TooLarge => ErrorKind::Invalid,
            KnowledgeError::Forbidden => ErrorKind::Forbidden,
            KnowledgeError::Embedding(_) => ErrorKind::Unavailable,
            KnowledgeError::Model(err) => err.kind(),
            KnowledgeError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            KnowledgeError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            KnowledgeError::StoreNotFound(_) => "vector_store_not_found",
            KnowledgeError::DocumentNotFound(_) => "document_not_found",
            KnowledgeError::JobNotFound(_) => "job_not_found",
            KnowledgeError::Exists(_) => "vector_store_exists",
            KnowledgeError::Protected(_) => "vector_store_protected",
            KnowledgeError::Invalid(_) => "invalid_request",
            KnowledgeError::Changed(_) => "write_conflict",
            KnowledgeError::JobLost => "job_lost",
            KnowledgeError::UnsupportedFile(_) => "unsupported_file",
            KnowledgeError::TooLarge => "file_too_large",
            KnowledgeError::Forbidden => "forbidden",
            KnowledgeError::Embedding(err) => err.code(),
            KnowledgeError::Model(err) => err.code(),
            KnowledgeError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            KnowledgeError::Store(_) => "internal_error",
        }
    }
}

pub type KnowledgeResult<T> = Result<T, KnowledgeError>;

fn require_admin(actor: &User) -> KnowledgeResult<()> {
    if actor.is_admin {
        Ok(())
    } else {
        Err(KnowledgeError::Forbidden)
    }
}

fn invalid(message: impl Into<String>) -> KnowledgeError {
    KnowledgeError::Invalid(message.into())
}

fn check_chunking(tokens: i32, overlap: i32) -> KnowledgeResult<()> {
    if !(50..=8000).contains(&tokens) {
        return Err(invalid("chunk_tokens must be between 50 and 8000"));
    }
    // Widened: an overlap near `i32::MAX` must be refused, not overflow.
    if overlap < 0 || i64::from(overlap) * 2 > i64::from(tokens) {
        return Err(invalid(
            "chunk_overlap must be at least 0 and at most half of chunk_tokens",
        ));
    }
    Ok(())
}

fn check_metadata(metadata: &Value) -> KnowledgeResult<()> {
    if metadata.is_object() {
        Ok(())
    } else {
        Err(invalid("metadata must be a JSON object"))
    }
}

async fn check_model(services: &Services, model_id: Option<i64>) -> KnowledgeResult<()> {
    if let Some(id) = model_id {
        match services.store.model(id).await? {
            Some(_) => {}
            None => {
                return Err(invalid(format!(
                    "embedding_model_id {id} is not a model of the registry"
                )));
            }
        }
    }
    Ok(())
}

/// The chunk size a new store gets when none is given: smaller for local models.
pub async fn default_chunk_tokens(
    services: &Services,
    model_id: Option<i64>,
) -> KnowledgeResult<i32> {
    let Some(id) = model_id else {
        return Ok(DEFAULT_CHUNK_TOKENS);
    };
    let Some(model) = services.store.model(id).await? else {
        return Ok(DEFAULT_CHUNK_TOKENS);
    };
    let local = services
        .store
        .provider(model.provider_id)
        .await?
        .is_some_and(|p| p.kind == crate::models::ProviderKind::Local);
    Ok(if local {
        LOCAL_CHUNK_TOKENS
    } else {
        DEFAULT_CHUNK_TOKENS
    })
}

/// Every knowledge base (administrators only).
pub async fn list_stores(services: &Services, actor: &User) -> KnowledgeResult<Vec<VectorStore>> {
    require_admin(actor)?;
    Ok(services.store.vector_stores().await?)
}

/// A knowledge base's settings (administrators only).
pub async fn get_store(
    services: &Services,
    actor: &User,
    slug: &str,
) -> KnowledgeResult<VectorStore> {
    require_admin(actor)?;
    store_by_slug(services, slug).await
}

/// A knowledge base for code that checked its caller (a search it may make).
pub(crate) async fn store_by_slug(services: &Services, slug: &str) -> KnowledgeResult<VectorStore> {
    services
        .store
        .vector_store(slug)
        .await?
        .ok_or_else(|| KnowledgeError::StoreNotFound(slug.to_string()))
}

pub async fn create_store(
    services: &Services,
    actor: &User,
    new: NewVectorStore,
) -> KnowledgeResult<VectorStore> {
    require_admin(actor)?;
    workflows::check_slug(&new.slug).map_err(|err| invalid(err.to_string()))?;
    check_metadata(&new.metadata)?;
    check_chunking(new.chunk_tokens, new.chunk_overlap)?;
    check_model(services, new.embedding_model_id).await?;
    match services.store.insert_vector_store(&new, Utc::now()).await {
        Err(StoreError::Conflict { .. }) => Err(KnowledgeError::Exists(new.slug)),
        other => Ok(other?),
    }
}

pub async fn update_store(
    services: &Services,
    actor: &User,
    slug: &str,
    patch: VectorStorePatch,
) -> KnowledgeResult<VectorStore> {
    require_admin(actor)?;
    let mut store = store_by_slug(services, slug).await?;
    if let Some(title) = patch.title {
        store.title = title;
    }
    if let Some(description) = patch.description {
        store.description = description;
    }
    if let Some(metadata) = patch.metadata {
        check_metadata(&metadata)?;
        store.metadata = metadata;
    }
    if let Some(tokens) = patch.chunk_tokens {
        store.chunk_tokens = tokens;
    }
    if let Some(overlap) = patch.chunk_overlap {
        store.chunk_overlap = overlap;
    }
    check_chunking(store.chunk_tokens, store.chunk_overlap)?;
    if let Some(protected) = patch.protected {
        store.protected = protected;
    }
    let model_changed = match patch.embedding_model_id {
        Some(model) if model != store.embedding_model_id => {
            check_model(services, model).await?;
            store.embedding_model_id = model;
            true
        }
        _ => false,
    };
    let job = model_changed
        .then_some(store.embedding_model_id)
        .flatten()
        .map(|_| NewJob::reembed(store.id));
    let updated = services
        .store
        .update_vector_store(&store, model_changed, job.as_ref(), Utc::now())
        .await?
        .ok_or_else(|| KnowledgeError::StoreNotFound(slug.to_string()))?;
    if job.is_some() {
        services.knowledge_jobs.notify_one();
    }
    Ok(updated)
}

pub async fn delete_store(services: &Services, actor: &User, slug: &str) -> KnowledgeResult<()> {
    require_admin(actor)?;
    let store = store_by_slug(services, slug).await?;
    if store.protected {
        return Err(KnowledgeError::Protected(store.slug));
    }
    let files = services.store.documents(store.id).await?;
    if !services.store.delete_vector_store(store.id).await? {
        return Err(KnowledgeError::StoreNotFound(slug.to_string()));
    }
    for doc in files.iter().filter(|d| d.source == "file") {
        let _ = services.blobs.delete(&blob_key(doc.store_id, doc.id)).await;
    }
    Ok(())
}

/// Where an uploaded file's bytes are kept until (and after) ingestion.
pub fn blob_key(store_id: i64, document_id: i64) -> String {
    format!("knowledge-{store_id}-{document_id}")
}

/// Whether `user` may search the store `slug` (and read its documents): administrators
/// always; other users when a workflow they can use (their own, one shared with them, or
/// the ChatKit default) and that an administrator owns searches it, in a `file_search`
/// step or an agent's knowledge tool.
pub async fn can_search(services: &Services, user: &User, slug: &str) -> KnowledgeResult<bool> {
    if user.is_admin {
        return Ok(true);
    }
    let mut workflows: Vec<crate::workflows::Workflow> = services
        .store
        .list_workflows(Some(user.id))
        .await?
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    if let Some(default) = services.store.chatkit_default().await? {
        workflows.push(default);
    }
    for workflow in workflows {
        // Only an administrator's workflow opens a store: a user cannot reach a store by
        // naming it in a workflow of their own.
        if !workflow_may_use_stores(services, &workflow).await? {
            continue;
        }
        if let Some(version) = services.store.production_version(workflow.id).await?
            && uses_store(&version.graph, slug)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a workflow's steps may search and write knowledge bases: its owner is an
/// administrator (administrators manage knowledge, and choose where it is used).
pub async fn workflow_may_use_stores(
    services: &Services,
    workflow: &crate::workflows::Workflow,
) -> KnowledgeResult<bool> {
    let Some(owner) = workflow.owner_id else {
        return Ok(false);
    };
    Ok(services
        .store
        .user_by_id(owner)
        .await?
        .is_some_and(|u| u.is_admin))
}

/// Whether a graph searches the store `slug` (each kind says whether its nodes do).
fn uses_store(graph: &crate::workflows::Graph, slug: &str) -> bool {
    graph.nodes.iter().filter(|n| n.is_enabled).any(|node| {
        crate::workflows::nodes::Kind::parse(&node.kind)
            .is_some_and(|kind| kind.behaviour().uses_store(&node.parameters, slug))
    })
}

/// Whether a search's configuration (a `file_search` node's parameters, an agent's tool
/// entry) names the store `slug`.
pub(crate) fn names_store(value: &Value, slug: &str) -> bool {
    let config = value.get("file_search").unwrap_or(value);
    ["vector_store_slug", "vector_store_id"].iter().any(|k| {
        config
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case(slug))
    }) || ["vector_store_slugs", "vector_store_ids"].iter().any(|k| {
        config
            .get(*k)
            .and_then(Value::as_array)
            .is_some_and(|list| {
                list.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(slug)))
            })
    }) || config
        .pointer("/store/slug")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case(slug))
}

/// Refuses a user who may not search `slug` (as if the store did not exist).
pub async fn check_search(services: &Services, user: &User, slug: &str) -> KnowledgeResult<()> {
    if can_search(services, user, slug).await? {
        Ok(())
    } else {
        Err(KnowledgeError::StoreNotFound(slug.to_string()))
    }
}

pub async fn list_documents(
    services: &Services,
    actor: &User,
    slug: &str,
) -> KnowledgeResult<Vec<Document>> {
    let store = get_store(services, actor, slug).await?;
    Ok(services.store.documents(store.id).await?)
}

/// A document and its chunks, for those who may search its knowledge base (a citation
/// they were shown opens).
pub async fn get_document(
    services: &Services,
    actor: &User,
    slug: &str,
    doc_id: &str,
) -> KnowledgeResult<(Document, Vec<Chunk>)> {
    check_search(services, actor, slug).await?;
    let store = store_by_slug(services, slug).await?;
    let doc = services
        .store
        .document(store.id, doc_id)
        .await?
        .ok_or_else(|| KnowledgeError::DocumentNotFound(doc_id.to_string()))?;
    let chunks = services.store.document_chunks(doc.id).await?;
    Ok((doc, chunks))
}

pub async fn delete_document(
    services: &Services,
    actor: &User,
    slug: &str,
    doc_id: &str,
) -> KnowledgeResult<()> {
    require_admin(actor)?;
    let store = store_by_slug(services, slug).await?;
    let doc = services
        .store
        .document(store.id, doc_id)
        .await?
        .ok_or_else(|| KnowledgeError::DocumentNotFound(doc_id.to_string()))?;
    services.store.delete_document(doc.id).await?;
    if doc.source == "file" {
        let _ = services.blobs.delete(&blob_key(store.id, doc.id)).await;
    }
    Ok(())
}

/// What JSON ingestion receives (the seed's `POST /api/vector-stores/{slug}/documents`).
#[derive(Debug, Clone)]
pub struct JsonIngest {
    pub doc_id: String,
    pub document: Value,
    pub metadata: Value,
    /// Used when the store is created by this call.
    pub store_title: Option<String>,
    pub store_metadata: Option<Value>,
}

fn check_doc_id(doc_id: &str) -> KnowledgeResult<()> {
    if doc_id.trim().is_empty() || doc_id.len() > 255 {
        return Err(invalid("doc_id must be 1 to 255 characters"));
    }
    Ok(())
}

/// Ingests a JSON document now (it is flattened to `path: value` lines and cut by entries,
/// as the seed does), creating the store when it is missing; replaces a document with the
/// same `doc_id`.
pub async fn ingest_json(
    services: &Services,
    actor: &User,
    slug: &str,
    input: JsonIngest,
) -> KnowledgeResult<Document> {
    require_admin(actor)?;
    ingest_json_into(services, Some(actor), actor.id, slug, input).await
}

/// JSON ingestion for a workflow step (`json_vector_store`): the store must exist, and the
/// run's user needs no administrator rights (the workflow's author chose the store).
pub async fn ingest_json_from_workflow(
    services: &Services,
    user_id: i64,
    slug: &str,
    input: JsonIngest,
) -> KnowledgeResult<Document> {
    ingest_json_into(services, None, user_id, slug, input).await
}

/// Ingests a JSON document; `creator` (an administrator) creates the store when missing.
async fn ingest_json_into(
    services: &Services,
    creator: Option<&User>,
    user_id: i64,
    slug: &str,
    input: JsonIngest,
) -> KnowledgeResult<Document> {
    check_doc_id(&input.doc_id)?;
    check_metadata(&input.metadata)?;
    let store = match (services.store.vector_store(slug).await?, creator) {
        (Some(store), _) => store,
        (None, None) => return Err(KnowledgeError::StoreNotFound(slug.to_string())),
        (None, Some(actor)) => {
            let new = NewVectorStore {
                slug: slug.to_string(),
                title: input.store_title.clone(),
                description: None,
                metadata: input.store_metadata.clone().unwrap_or_else(|| json!({})),
                embedding_model_id: None,
                chunk_tokens: DEFAULT_CHUNK_TOKENS,
                chunk_overlap: DEFAULT_CHUNK_OVERLAP,
                protected: false,
            };
            match create_store(services, actor, new).await {
                Err(KnowledgeError::Exists(_)) => store_by_slug(services, slug).await?,
                other => other?,
            }
        }
    };
    let flat = chunking::flatten_json(&input.document);
    let mut metadata = input.metadata.as_object().cloned().unwrap_or_default();
    metadata.insert("line_count".into(), json!(flat.entries.len()));
    if !flat.redactions.is_empty() {
        metadata.insert("redactions".into(), json!(flat.redactions));
    }
    let texts = chunking::chunk_entries(&flat.entries);
    let chunks = embed_chunks(services, &store, &input.doc_id, texts, Some(user_id)).await?;
    let new = NewDocument {
        doc_id: input.doc_id,
        title: input
            .document
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_string),
        source: "json",
        filename: None,
        mime_type: Some("application/json".into()),
        size: None,
        raw_json: Some(input.document),
        metadata: Value::Object(metadata),
    };
    put_ready(services, &store, &new, &chunks).await
}

/// Stores a document whose chunks are ready, replacing one with the same `doc_id`.
async fn put_ready(
    services: &Services,
    store: &VectorStore,
    new: &NewDocument,
    chunks: &[NewChunk],
) -> KnowledgeResult<Document> {
    let replaced = services.store.document(store.id, &new.doc_id).await?;
    let (doc, _) = services
        .store
        .put_document(
            store.id,
            new,
            DocumentStatus::Ready,
            chunks,
            store.embedding_model_id,
            None,
            Utc::now(),
        )
        .await?;
    forget_file(services, replaced.filter(|r| r.id != doc.id)).await;
    Ok(doc)
}

/// Deletes the kept bytes of a document that was replaced or deleted, if it was a file.
async fn forget_file(services: &Services, doc: Option<Document>) {
    if let Some(doc) = doc.filter(|d| d.source == "file")
        && let Err(err) = services.blobs.delete(&blob_key(doc.store_id, doc.id)).await
    {
        tracing::warn!(doc_id = %doc.doc_id, error = %err, "could not delete a replaced file's bytes");
    }
}

/// Ingests a document already cut into chunks (importers, benchmarks): the texts are
/// embedded with the store's model, in batches, and replace any document with that id.
pub async fn ingest_chunks(
    services: &Services,
    actor: &User,
    slug: &str,
    doc_id: &str,
    title: Option<String>,
    texts: Vec<String>,
    metadata: Value,
) -> KnowledgeResult<Document> {
    require_admin(actor)?;
    check_doc_id(doc_id)?;
    check_metadata(&metadata)?;
    let store = store_by_slug(services, slug).await?;
    let texts = texts.into_iter().map(|t| (t, Map::new())).collect();
    let chunks = embed_chunks(services, &store, doc_id, texts, Some(actor.id)).await?;
    let new = NewDocument {
        doc_id: doc_id.to_string(),
        title,
        source: "json",
        filename: None,
        mime_type: Some("text/plain".into()),
        size: None,
        raw_json: None,
        metadata,
    };
    put_ready(services, &store, &new, &chunks).await
}

/// An uploaded file for ingestion.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub filename: String,
    pub mime_type: Option<String>,
    pub bytes: Vec<u8>,
    pub doc_id: Option<String>,
    pub title: Option<String>,
    pub metadata: Value,
}

/// Accepts a file: checks its type, keeps its bytes and queues its ingestion; returns the
/// pending document and its job at once. Replaces a document with the same `doc_id`
/// (by default the file name).
pub async fn upload_file(
    services: &Services,
    actor: &User,
    slug: &str,
    upload: FileUpload,
) -> KnowledgeResult<(Document, Job)> {
    require_admin(actor)?;
    let store = store_by_slug(services, slug).await?;
    if upload.bytes.len() > MAX_FILE_BYTES {
        return Err(KnowledgeError::TooLarge);
    }
    let kind = extract::FileKind::detect(&upload.filename, upload.mime_type.as_deref())
        .ok_or_else(|| {
            KnowledgeError::UnsupportedFile(format!(
                "`{}` is not a supported file type (use {})",
                upload.filename,
                extract::FileKind::SUPPORTED
            ))
        })?;
    check_metadata(&upload.metadata)?;
    let doc_id = upload
        .doc_id
        .clone()
        .unwrap_or_else(|| upload.filename.clone());
    check_doc_id(&doc_id)?;
    let new = NewDocument {
        doc_id,
        title: upload.title.clone(),
        source: "file",
        filename: Some(upload.filename.clone()),
        mime_type: Some(kind.mime_type().to_string()),
        size: Some(upload.bytes.len() as i64),
        raw_json: None,
        metadata: upload.metadata.clone(),
    };
    let job = NewJob::ingest(store.id);
    let replaced = services.store.document(store.id, &new.doc_id).await?;
    let (doc, job_id) = services
        .store
        .put_document(
            store.id,
            &new,
            DocumentStatus::Pending,
            &[],
            None,
            Some(&job),
            Utc::now(),
        )
        .await?;
    // The job waits for the bytes: it finds them or fails (and retries) cleanly.
    services
        .blobs
        .put(&blob_key(store.id, doc.id), &upload.bytes)
        .await?;
    forget_file(services, replaced.filter(|r| r.id != doc.id)).await;
    let job_id = job_id.ok_or_else(|| StoreError::Other("the job was not created".into()))?;
    // The job was held so no worker could look for the bytes before they landed.
    services
        .store
        .release_knowledge_job(job_id, Utc::now())
        .await?;
    let job = services
        .store
        .knowledge_job(job_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    services.knowledge_jobs.notify_one();
    Ok((doc, job))
}

pub async fn get_job(
    services: &Services,
    actor: &User,
    slug: &str,
    id: i64,
) -> KnowledgeResult<Job> {
    let store = get_store(services, actor, slug).await?;
    match services.store.knowledge_job(id).await? {
        Some(job) if job.store_id == store.id => Ok(job),
        _ => Err(KnowledgeError::JobNotFound(id)),
    }
}

pub async fn list_jobs(services: &Services, actor: &User, slug: &str) -> KnowledgeResult<Vec<Job>> {
    let store = get_store(services, actor, slug).await?;
    Ok(services.store.knowledge_jobs(store.id).await?)
}

/// Embeds texts with the store's model (in batches), or returns them without vectors
/// when the store has none. Records the calls' usage.
pub(crate) async fn embed_chunks(
    services: &Services,
    store: &VectorStore,
    doc_id: &str,
    texts: Vec<(String, Map<String, Value>)>,
    user_id: Option<i64>,
) -> KnowledgeResult<Vec<NewChunk>> {
    let inputs: Vec<String> = texts.iter().map(|(t, _)| t.clone()).collect();
    let vectors = match store.embedding_model_id {
        Some(model_id) => Some(embed(services, model_id, &inputs, user_id).await?),
        None => None,
    };
    let mut vectors = vectors.map(Vec::into_iter);
    Ok(texts
        .into_iter()
        .enumerate()
        .map(|(index, (text, mut metadata))| {
            metadata.insert("doc_id".into(), json!(doc_id));
            metadata.insert("store".into(), json!(store.slug));
            metadata.insert("chunk_index".into(), json!(index));
            NewChunk {
                index: index as i32,
                text,
                metadata: Value::Object(metadata),
                embedding: vectors.as_mut().and_then(Iterator::next),
            }
        })
        .collect())
}

/// L2-normalised vectors for `inputs` from a registry model, in batches.
pub(crate) async fn embed(
    services: &Services,
    model_id: i64,
    inputs: &[String],
    user_id: Option<i64>,
) -> KnowledgeResult<Vec<Vec<f32>>> {
    let model = models::model(services, model_id).await?;
    let provider = models::credentials(services, model.provider_id).await?;
    let mut out = Vec::with_capacity(inputs.len());
    for batch in inputs.chunks(EMBED_BATCH) {
        let embeddings = services
            .llm
            .embed(&provider, &model.name, batch, None)
            .await?;
        if embeddings.vectors.len() != batch.len() {
            return Err(KnowledgeError::Embedding(LlmError::MalformedStream(
                format!(
                    "asked for {} embeddings, got {}",
                    batch.len(),
                    embeddings.vectors.len()
                ),
            )));
        }
        let mut record = usage::UsageRecord {
            at: Utc::now(),
            user_id,
            workflow_id: None,
            run_id: None,
            provider_id: Some(model.provider_id),
            model: model.name.clone(),
            purpose: Purpose::Embedding,
            usage: embeddings.usage,
            cost_usd: None,
        };
        record.cost_usd = model.pricing.cost(embeddings.usage);
        usage::record(services, record).await?;
        for mut vector in embeddings.vectors {
            if vector.is_empty() || vector.len() > 16_000 {
                return Err(KnowledgeError::Embedding(LlmError::MalformedStream(
                    format!("an embedding has {} dimensions", vector.len()),
                )));
            }
            normalize(&mut vector);
            out.push(vector);
        }
    }
    if let Some(first) = out.first()
        && out.iter().any(|v| v.len() != first.len())
    {
        return Err(KnowledgeError::Embedding(LlmError::MalformedStream(
            "the embeddings of one call differ in dimension".into(),
        )));
    }
    Ok(out)
}

/// Scales `v` to unit length (cosine similarity becomes a dot product).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}
