//! `/api/vector-stores`: knowledge bases. Administrators manage stores and documents (JSON
//! ingestion as the seed offers it, and file uploads ingested by background jobs); users
//! search the stores that workflows they can use search.

use axum::{
    Json,
    extract::{FromRequest, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use domain::knowledge::{
    self, Chunk, Document, FileUpload, Job, JsonIngest, KnowledgeError, NewVectorStore,
    VectorStore, VectorStorePatch,
    search::{self, DocumentHit, Outcome, Ranking, SearchHit, SearchRequest},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{ApiError, ApiResult, ErrorBody},
    extract::{AdminUser, AppJson, AppPath, AuthUser},
};

pub fn router() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new().routes(routes!(upload_file)).layer(
        axum::extract::DefaultBodyLimit::max(knowledge::MAX_FILE_BYTES + 64 * 1024),
    );
    OpenApiRouter::new()
        .routes(routes!(list_stores, create_store))
        .routes(routes!(get_store, update_store, delete_store))
        .routes(routes!(list_documents, ingest_json))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(search_json))
        .routes(routes!(search_documents))
        .routes(routes!(search_document))
        .merge(uploads)
}

impl From<KnowledgeError> for ApiError {
    fn from(err: KnowledgeError) -> ApiError {
        ApiError::from_domain(&err)
    }
}

/// A knowledge base.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorStoreResponse {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The registry model that embeds chunks and queries; `null`: full-text search only.
    pub embedding_model_id: Option<i64>,
    /// The dimension of the stored vectors, once known.
    pub dimensions: Option<i32>,
    pub chunk_tokens: i32,
    pub chunk_overlap: i32,
    pub protected: bool,
    pub documents_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<VectorStore> for VectorStoreResponse {
    fn from(s: VectorStore) -> Self {
        VectorStoreResponse {
            slug: s.slug,
            title: s.title,
            description: s.description,
            metadata: s.metadata,
            embedding_model_id: s.embedding_model_id,
            dimensions: s.dimensions,
            chunk_tokens: s.chunk_tokens,
            chunk_overlap: s.chunk_overlap,
            protected: s.protected,
            documents_count: s.documents_count,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStoreRequest {
    pub slug: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub embedding_model_id: Option<i64>,
    /// Tokens per chunk of an uploaded file (default 400; 200 with a local model, which
    /// reads at most 256 word pieces).
    #[serde(default)]
    pub chunk_tokens: Option<i32>,
    /// Tokens a chunk repeats from the one before (default 60).
    #[serde(default)]
    pub chunk_overlap: Option<i32>,
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStoreRequest {
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Another model re-embeds every chunk in a background job; `null` turns semantic
    /// search off.
    #[serde(default, deserialize_with = "crate::routes::users::double_option")]
    #[schema(value_type = Option<i64>)]
    pub embedding_model_id: Option<Option<i64>>,
    #[serde(default)]
    pub chunk_tokens: Option<i32>,
    #[serde(default)]
    pub chunk_overlap: Option<i32>,
    #[serde(default)]
    pub protected: Option<bool>,
}

/// A document of a store.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentResponse {
    pub doc_id: String,
    pub title: Option<String>,
    /// `json` or `file`.
    pub source: String,
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub chunk_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Document> for DocumentResponse {
    fn from(d: Document) -> Self {
        DocumentResponse {
            doc_id: d.doc_id,
            title: d.title,
            source: d.source,
            filename: d.filename,
            mime_type: d.mime_type,
            size: d.size,
            metadata: d.metadata,
            status: d.status.as_str().to_string(),
            error: d.error,
            chunk_count: d.chunk_count,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkResponse {
    pub chunk_index: i32,
    pub text: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Whether the chunk has a vector.
    pub embedded: bool,
}

impl From<Chunk> for ChunkResponse {
    fn from(c: Chunk) -> Self {
        ChunkResponse {
            chunk_index: c.chunk_index,
            text: c.text,
            metadata: c.metadata,
            embedded: c.dims.is_some(),
        }
    }
}

/// A document with its content and chunks.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDetail {
    #[serde(flatten)]
    pub summary: DocumentResponse,
    /// The JSON document as ingested (JSON documents).
    #[schema(value_type = Option<Object>)]
    pub document: Option<Value>,
    pub chunks: Vec<ChunkResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub id: i64,
    /// `ingest` or `reembed`.
    pub kind: String,
    pub doc_id: Option<String>,
    /// `held` (its file is being stored), `queued`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Chunks done out of `total` (0 while unknown).
    pub done: i32,
    pub total: i32,
    pub error: Option<String>,
    /// When a queued job (a retry) may start.
    pub run_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn job_response(job: Job, doc_id: Option<String>) -> JobResponse {
    JobResponse {
        id: job.id,
        kind: job.kind.as_str().to_string(),
        doc_id,
        status: job.status.as_str().to_string(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        done: job.done,
        total: job.total,
        error: job.error,
        run_after: job.run_after,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    pub document: DocumentResponse,
    pub job: JobResponse,
}

/// The seed's JSON ingestion request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestJsonRequest {
    pub doc_id: String,
    /// Any JSON object; flattened to `path: value` lines and cut by entries.
    #[schema(value_type = Object)]
    pub document: Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Used when the store does not exist yet (it is created).
    #[serde(default)]
    pub store_title: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub store_metadata: Option<Value>,
}

/// What the seed's JSON ingestion answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestJsonResponse {
    pub doc_id: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub chunk_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub query: String,
    /// Results (chunks, or documents for `search_documents`), 1 to 50.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Conditions on document metadata (and `doc_id`, `title`): a value for equality, or
    /// `{"in": [...]}`, `{"nin": [...]}`, `{"ne": x}`, `{"gt"|"gte"|"lt"|"lte": number or date}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata_filters: Option<Map<String, Value>>,
    /// With `sparse_weight`: the seed's weighted fusion instead of reciprocal rank fusion.
    #[serde(default)]
    pub dense_weight: Option<f64>,
    #[serde(default)]
    pub sparse_weight: Option<f64>,
    /// Matches kept per document (`search_documents`, default 3).
    #[serde(default)]
    pub chunks_per_document: Option<usize>,
    /// `rrf` (default) or `weighted`.
    #[serde(default)]
    pub ranking: Option<String>,
}

fn default_top_k() -> usize {
    5
}

impl SearchBody {
    fn request(self) -> ApiResult<SearchRequest> {
        let ranking = match self.ranking.as_deref() {
            None => None,
            Some("rrf") => Some(Ranking::Rrf),
            Some("weighted") => Some(Ranking::Weighted),
            Some(other) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    format!("ranking must be `rrf` or `weighted`, not `{other}`"),
                ));
            }
        };
        Ok(SearchRequest {
            query: self.query,
            top_k: self.top_k,
            metadata_filters: self.metadata_filters,
            dense_weight: self.dense_weight,
            sparse_weight: self.sparse_weight,
            chunks_per_document: self.chunks_per_document,
            ranking,
        })
    }
}

/// A chunk found by a search (the seed's shape, plus what a citation needs).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkResult {
    pub doc_id: String,
    pub chunk_index: i32,
    pub text: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[schema(value_type = Object)]
    pub document_metadata: Value,
    pub title: Option<String>,
    pub filename: Option<String>,
    /// Cosine similarity; `null` without semantic search.
    pub dense_score: Option<f64>,
    /// Full-text relevance (BM25 on SQLite, `ts_rank_cd` on PostgreSQL); `null` when the
    /// chunk has none of the query's words.
    pub bm25_score: Option<f64>,
    pub score: f64,
}

impl From<SearchHit> for ChunkResult {
    fn from(h: SearchHit) -> Self {
        ChunkResult {
            doc_id: h.chunk.doc_id,
            chunk_index: h.chunk.chunk_index,
            text: h.chunk.text,
            metadata: h.chunk.metadata,
            document_metadata: h.chunk.document_metadata,
            title: h.chunk.document_title,
            filename: h.chunk.filename,
            dense_score: h.dense_score,
            bm25_score: h.bm25_score,
            score: h.score,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentResult {
    pub doc_id: String,
    pub title: Option<String>,
    pub filename: Option<String>,
    /// The sum of its matches' scores.
    pub score: f64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub matches: Vec<ChunkResult>,
}

impl From<DocumentHit> for DocumentResult {
    fn from(d: DocumentHit) -> Self {
        DocumentResult {
            doc_id: d.doc_id,
            title: d.title,
            filename: d.filename,
            score: d.score,
            metadata: d.metadata,
            matches: d.matches.into_iter().map(Into::into).collect(),
        }
    }
}

/// The results as a JSON list (the seed's shape); how the search ran goes in headers:
/// `x-search-mode` (`hybrid` or `full_text`) and, when semantic search did not run,
/// `x-search-notice` saying why.
fn search_response<T, R: Serialize + From<T>>(outcome: Outcome<T>) -> Response {
    let results: Vec<R> = outcome.results.into_iter().map(R::from).collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-search-mode",
        HeaderValue::from_static(if outcome.semantic {
            "hybrid"
        } else {
            "full_text"
        }),
    );
    if let Some(notice) = outcome.notice {
        let ascii: String = notice
            .chars()
            .filter(|c| c.is_ascii() && !c.is_control())
            .collect();
        if let Ok(value) = HeaderValue::from_str(&ascii) {
            headers.insert("x-search-notice", value);
        }
    }
    (headers, Json(results)).into_response()
}

/// Every store, with its document count.
#[utoipa::path(get, path = "/api/vector-stores", tag = "vector-stores", security(("bearer" = [])),
    responses((status = 200, body = Vec<VectorStoreResponse>), (status = 403, body = ErrorBody)))]
async fn list_stores(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> ApiResult<Json<Vec<VectorStoreResponse>>> {
    let stores = knowledge::list_stores(&state.services, &admin.user).await?;
    Ok(Json(stores.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/vector-stores", tag = "vector-stores", security(("bearer" = [])),
    request_body = CreateStoreRequest,
    responses((status = 201, body = VectorStoreResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_store(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(req): AppJson<CreateStoreRequest>,
) -> ApiResult<(StatusCode, Json<VectorStoreResponse>)> {
    let new = NewVectorStore {
        slug: req.slug,
        title: req.title,
        description: req.description,
        metadata: req.metadata.unwrap_or_else(|| json!({})),
        embedding_model_id: req.embedding_model_id,
        chunk_tokens: match req.chunk_tokens {
            Some(tokens) => tokens,
            None => {
                knowledge::default_chunk_tokens(&state.services, req.embedding_model_id).await?
            }
        },
        chunk_overlap: req
            .chunk_overlap
            .unwrap_or(knowledge::DEFAULT_CHUNK_OVERLAP),
        protected: req.protected,
    };
    let store = knowledge::create_store(&state.services, &admin.user, new).await?;
    Ok((StatusCode::CREATED, Json(store.into())))
}

#[utoipa::path(get, path = "/api/vector-stores/{slug}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = VectorStoreResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_store(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<Json<VectorStoreResponse>> {
    Ok(Json(
        knowledge::get_store(&state.services, &admin.user, &slug)
            .await?
            .into(),
    ))
}

/// Changes a store. A new embedding model re-embeds every chunk in a background job.
#[utoipa::path(patch, path = "/api/vector-stores/{slug}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)), request_body = UpdateStoreRequest,
    responses((status = 200, body = VectorStoreResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_store(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
    AppJson(req): AppJson<UpdateStoreRequest>,
) -> ApiResult<Json<VectorStoreResponse>> {
    let patch = VectorStorePatch {
        title: req.title,
        description: req.description,
        metadata: req.metadata,
        embedding_model_id: req.embedding_model_id,
        chunk_tokens: req.chunk_tokens,
        chunk_overlap: req.chunk_overlap,
        protected: req.protected,
    };
    Ok(Json(
        knowledge::update_store(&state.services, &admin.user, &slug, patch)
            .await?
            .into(),
    ))
}

/// Deletes a store with its documents; a protected store is refused (422).
#[utoipa::path(delete, path = "/api/vector-stores/{slug}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_store(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<StatusCode> {
    knowledge::delete_store(&state.services, &admin.user, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/vector-stores/{slug}/documents", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = Vec<DocumentResponse>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_documents(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<Json<Vec<DocumentResponse>>> {
    let docs = knowledge::list_documents(&state.services, &admin.user, &slug).await?;
    Ok(Json(docs.into_iter().map(Into::into).collect()))
}

/// Ingests a JSON document now (the seed's ingestion): flattened to `path: value` lines,
/// cut by entries and embedded. Creates the store when it is missing; the same `doc_id`
/// replaces the document.
#[utoipa::path(post, path = "/api/vector-stores/{slug}/documents", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)), request_body = IngestJsonRequest,
    responses((status = 201, body = IngestJsonResponse), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn ingest_json(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
    AppJson(req): AppJson<IngestJsonRequest>,
) -> ApiResult<(StatusCode, Json<IngestJsonResponse>)> {
    let input = JsonIngest {
        doc_id: req.doc_id,
        document: req.document,
        metadata: req.metadata.unwrap_or_else(|| json!({})),
        store_title: req.store_title,
        store_metadata: req.store_metadata,
    };
    let doc = knowledge::ingest_json(&state.services, &admin.user, &slug, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(IngestJsonResponse {
            doc_id: doc.doc_id,
            metadata: doc.metadata,
            chunk_count: doc.chunk_count,
            created_at: doc.created_at,
            updated_at: doc.updated_at,
        }),
    ))
}

/// Uploads a file (`multipart/form-data`: `file`, and optional `doc_id`, `title` and
/// `metadata` as a JSON object) of type .txt, .md, .html, .json or .csv. Answers at once
/// (202) with the pending document and the job that ingests it; follow it at
/// `/api/vector-stores/{slug}/jobs/{id}`.
#[utoipa::path(post, path = "/api/vector-stores/{slug}/files", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 202, body = UploadResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_file(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_upload", message);
    let mut form = axum::extract::Multipart::from_request(request, &state)
        .await
        .map_err(|err| bad(format!("send the file as multipart/form-data: {err}")))?;
    let mut upload = FileUpload {
        filename: String::new(),
        mime_type: None,
        bytes: Vec::new(),
        doc_id: None,
        title: None,
        metadata: json!({}),
    };
    let mut has_file = false;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|err| bad(format!("the multipart body is malformed: {err}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                upload.filename = field.file_name().unwrap_or("upload.txt").to_string();
                upload.mime_type = field.content_type().map(str::to_string);
                upload.bytes = field
                    .bytes()
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "file_too_large",
                            format!(
                                "the file is larger than {} MiB",
                                knowledge::MAX_FILE_BYTES / (1024 * 1024)
                            ),
                        )
                    })?
                    .to_vec();
                has_file = true;
            }
            "doc_id" | "title" | "metadata" => {
                let text = field
                    .text()
                    .await
                    .map_err(|err| bad(format!("the field `{name}` is unreadable: {err}")))?;
                match name.as_str() {
                    "doc_id" => upload.doc_id = Some(text),
                    "title" => upload.title = Some(text),
                    _ => {
                        upload.metadata = serde_json::from_str(&text).map_err(|err| {
                            bad(format!("`metadata` must be a JSON object: {err}"))
                        })?;
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown field `{other}` (use file, doc_id, title, metadata)"
                )));
            }
        }
    }
    if !has_file {
        return Err(bad("the multipart body has no `file` field".into()));
    }
    let (doc, job) = knowledge::upload_file(&state.services, &admin.user, &slug, upload).await?;
    let doc_id = Some(doc.doc_id.clone());
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadResponse {
            document: doc.into(),
            job: job_response(job, doc_id),
        }),
    ))
}

/// A document with its content and chunks.
#[utoipa::path(get, path = "/api/vector-stores/{slug}/documents/{doc_id}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path), ("doc_id" = String, Path)),
    responses((status = 200, body = DocumentDetail), (status = 404, body = ErrorBody)))]
async fn get_document(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((slug, doc_id)): AppPath<(String, String)>,
) -> ApiResult<Json<DocumentDetail>> {
    let (mut doc, chunks) = knowledge::get_document(&state.services, &user, &slug, &doc_id).await?;
    let document = doc.raw_json.take();
    Ok(Json(DocumentDetail {
        summary: doc.into(),
        document,
        chunks: chunks.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/vector-stores/{slug}/documents/{doc_id}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path), ("doc_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_document(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath((slug, doc_id)): AppPath<(String, String)>,
) -> ApiResult<StatusCode> {
    knowledge::delete_document(&state.services, &admin.user, &slug, &doc_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn doc_ids(state: &AppState, jobs: Vec<Job>) -> ApiResult<Vec<JobResponse>> {
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let doc_id = match job.document_id {
            Some(id) => state
                .services
                .store
                .document_by_id(id)
                .await
                .map_err(KnowledgeError::from)?
                .map(|d| d.doc_id),
            None => None,
        };
        out.push(job_response(job, doc_id));
    }
    Ok(out)
}

/// The store's ingestion and re-embedding jobs, newest first.
#[utoipa::path(get, path = "/api/vector-stores/{slug}/jobs", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = Vec<JobResponse>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(slug): AppPath<String>,
) -> ApiResult<Json<Vec<JobResponse>>> {
    let jobs = knowledge::list_jobs(&state.services, &admin.user, &slug).await?;
    Ok(Json(doc_ids(&state, jobs).await?))
}

#[utoipa::path(get, path = "/api/vector-stores/{slug}/jobs/{id}", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = JobResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath((slug, id)): AppPath<(String, i64)>,
) -> ApiResult<Json<JobResponse>> {
    let job = knowledge::get_job(&state.services, &admin.user, &slug, id).await?;
    let mut list = doc_ids(&state, vec![job]).await?;
    Ok(Json(list.remove(0)))
}

/// The best chunks for a query: hybrid (vectors and full text) when the store has an
/// embedding model, full text otherwise (`x-search-mode` says which).
#[utoipa::path(post, path = "/api/vector-stores/{slug}/search_json", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)), request_body = SearchBody,
    responses((status = 200, body = Vec<ChunkResult>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn search_json(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<SearchBody>,
) -> ApiResult<Response> {
    let req = body.request()?;
    let outcome = search::search_chunks(&state.services, &user, &slug, &req, None).await?;
    Ok(search_response::<SearchHit, ChunkResult>(outcome))
}

/// The best documents for a query, each with its best matches.
#[utoipa::path(post, path = "/api/vector-stores/{slug}/search_documents", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path)), request_body = SearchBody,
    responses((status = 200, body = Vec<DocumentResult>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn search_documents(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath(slug): AppPath<String>,
    AppJson(body): AppJson<SearchBody>,
) -> ApiResult<Response> {
    let req = body.request()?;
    let outcome = search::search_documents(&state.services, &user, &slug, &req).await?;
    Ok(search_response::<DocumentHit, DocumentResult>(outcome))
}

/// The best chunks of one document.
#[utoipa::path(post, path = "/api/vector-stores/{slug}/documents/{doc_id}/search", tag = "vector-stores", security(("bearer" = [])),
    params(("slug" = String, Path), ("doc_id" = String, Path)), request_body = SearchBody,
    responses((status = 200, body = Vec<ChunkResult>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn search_document(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppPath((slug, doc_id)): AppPath<(String, String)>,
    AppJson(body): AppJson<SearchBody>,
) -> ApiResult<Response> {
    let req = body.request()?;
    let outcome = search::search_chunks(&state.services, &user, &slug, &req, Some(&doc_id)).await?;
    Ok(search_response::<SearchHit, ChunkResult>(outcome))
}
