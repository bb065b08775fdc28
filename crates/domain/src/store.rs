//! The storage traits the domain consumes; `store` implements them for SQLite and PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    chat::{ChatThread, PageRequest, StoredAttachment},
    knowledge::{
        Chunk, ChunkHit, Document, DocumentStatus, Job, NewChunk, NewDocument, NewJob,
        NewVectorStore, VectorStore,
    },
    mcp::{McpServer, McpTool},
    mcp::{oauth::OAuthSession, server::ExposedWorkflow},
    models::{
        ApiStyle, Capabilities, Model, ModelOrigin, Pricing, Provider, ProviderKind, Timeouts,
        usage::{GroupBy, UsageLine, UsageRecord},
    },
    runs::{Event, Run, RunFilter, Step},
    tools::ToolDef,
    users::{NewUser, User, UserCredentials, UserPatch},
    widgets::{NewWidget, Widget, WidgetPatch},
    workflows::{Graph, Permission, Share, Version, Workflow},
};

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
    /// The failed-login rows of an account from an address, of the account, and of the
    /// address (`("", address)`), whichever exist.
    async fn login_throttles(
        &self,
        email: &str,
        address: &str,
    ) -> StoreResult<Vec<crate::auth::throttle::LoginThrottle>>;
    /// Counts one failed login against the account from the address, the account and the
    /// address (a count whose first failure is before `window_start` starts over), and
    /// forgets rows idle since before `window_start`; returns the three rows as they are now.
    async fn record_login_failure(
        &self,
        email: &str,
        address: &str,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> StoreResult<Vec<crate::auth::throttle::LoginThrottle>>;
    /// Holds the account from the address until `until`.
    async fn block_login(
        &self,
        email: &str,
        address: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Forgets the failures of the account from the address (after a successful login).
    async fn clear_login_pair(&self, email: &str, address: &str) -> StoreResult<()>;
    /// Rows with a failure since `since` or a hold after it, newest first.
    async fn list_login_throttles(
        &self,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<crate::auth::throttle::LoginThrottle>>;
    /// Forgets the rows of an account (`email`), of an address, or all (neither);
    /// returns how many.
    async fn delete_login_throttles(
        &self,
        email: Option<&str>,
        address: Option<&str>,
    ) -> StoreResult<u64>;
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

/// A workflow about to be inserted with its first version.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    pub owner_id: Option<i64>,
}

/// Workflow fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkflowPatch {
    pub slug: Option<String>,
    pub display_name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub follow_production: Option<bool>,
}

/// A version about to be inserted; it gets the next number of its workflow.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub name: Option<String>,
    pub graph: Graph,
    pub created_by: Option<i64>,
}

/// An edit of a draft: its new graph (and name), checked against `expected_revision`.
#[derive(Debug, Clone)]
pub struct DraftEdit<'a> {
    pub graph: &'a Graph,
    pub name: Option<&'a str>,
    pub expected_revision: Option<i64>,
    pub updated_by: Option<i64>,
}

/// The outcome of editing a draft in place.
#[derive(Debug)]
pub enum DraftUpdate {
    Updated(Box<Version>),
    NotFound,
    /// The version is published, so it cannot change.
    Published,
    /// `expected_revision` no longer matches.
    Stale {
        current: i64,
    },
}

/// A workflow and, for a listing user, what a share grants them.
pub type ListedWorkflow = (Workflow, Option<Permission>);

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Inserts a workflow and its version 1 in one transaction; `publish` puts it in production.
    async fn insert_workflow(
        &self,
        workflow: &NewWorkflow,
        version: &NewVersion,
        publish: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<(Workflow, Version)>;
    async fn workflow_by_id(&self, id: i64) -> StoreResult<Option<Workflow>>;
    async fn workflow_by_slug(&self, slug: &str) -> StoreResult<Option<Workflow>>;
    /// All workflows (`visible_to: None`), or those a user owns or has a share on.
    async fn list_workflows(&self, visible_to: Option<i64>) -> StoreResult<Vec<ListedWorkflow>>;
    async fn count_workflows(&self) -> StoreResult<i64>;
    async fn update_workflow(
        &self,
        id: i64,
        patch: &WorkflowPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Workflow>>;
    async fn delete_workflow(&self, id: i64) -> StoreResult<bool>;

    async fn share_of(&self, workflow_id: i64, user_id: i64) -> StoreResult<Option<Permission>>;
    async fn list_shares(&self, workflow_id: i64) -> StoreResult<Vec<Share>>;
    async fn put_share(
        &self,
        workflow_id: i64,
        user_id: i64,
        permission: Permission,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn delete_share(&self, workflow_id: i64, user_id: i64) -> StoreResult<bool>;

    /// Versions newest first, with their graphs.
    async fn list_versions(&self, workflow_id: i64) -> StoreResult<Vec<Version>>;
    async fn version(&self, workflow_id: i64, version_id: i64) -> StoreResult<Option<Version>>;
    async fn production_version(&self, workflow_id: i64) -> StoreResult<Option<Version>>;
    async fn insert_version(
        &self,
        workflow_id: i64,
        version: &NewVersion,
        now: DateTime<Utc>,
    ) -> StoreResult<Version>;
    /// Replaces a draft's graph (and name), when `expected_revision` (if given) still matches.
    async fn update_draft(
        &self,
        workflow_id: i64,
        version_id: i64,
        edit: &DraftEdit<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<DraftUpdate>;
    /// Puts a version in production (freezing it), if it is still at `revision`; `None`
    /// when it does not exist or changed meanwhile.
    async fn publish_version(
        &self,
        workflow_id: i64,
        version_id: i64,
        revision: i64,
        published_by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Version>>;
    /// Makes one workflow the ChatKit default and clears the flag on every other.
    async fn set_chatkit_default(&self, workflow_id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn chatkit_default(&self) -> StoreResult<Option<Workflow>>;
}

/// Every stored field of a provider but its id, timestamps and default flag.
#[derive(Debug, Clone)]
pub struct ProviderRecord {
    pub kind: ProviderKind,
    pub label: String,
    pub api_base: String,
    pub api_style: ApiStyle,
    pub api_key_encrypted: Option<String>,
    pub api_key_hint: Option<String>,
    pub extra_headers_encrypted: Option<String>,
    pub extra_header_names: Vec<String>,
    pub timeouts: Timeouts,
    pub max_retries: u32,
}

/// Every stored field of a model but its id, timestamps and default flags.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    pub provider_id: i64,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub capabilities: Capabilities,
    pub context_window: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub pricing: Pricing,
    pub enabled: bool,
    /// Kept as created: an update does not change where a model came from.
    pub origin: ModelOrigin,
}

/// Which default a model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultModel {
    /// The model agents use when none is set.
    Chat,
    /// The model that writes thread titles.
    Title,
}

#[async_trait]
pub trait ModelStore: Send + Sync {
    async fn insert_provider(
        &self,
        record: &ProviderRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Provider>;
    async fn providers(&self) -> StoreResult<Vec<Provider>>;
    async fn provider(&self, id: i64) -> StoreResult<Option<Provider>>;
    async fn update_provider(
        &self,
        id: i64,
        record: &ProviderRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Provider>>;
    async fn delete_provider(&self, id: i64) -> StoreResult<bool>;
    /// Makes one provider the default (or none, with `None`).
    async fn set_default_provider(&self, id: Option<i64>, now: DateTime<Utc>) -> StoreResult<()>;

    async fn insert_model(&self, record: &ModelRecord, now: DateTime<Utc>) -> StoreResult<Model>;
    /// Models, optionally of one provider and optionally only enabled ones, by provider then name.
    async fn models(&self, provider_id: Option<i64>, enabled_only: bool)
    -> StoreResult<Vec<Model>>;
    async fn model(&self, id: i64) -> StoreResult<Option<Model>>;
    async fn update_model(
        &self,
        id: i64,
        record: &ModelRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Model>>;
    async fn delete_model(&self, id: i64) -> StoreResult<bool>;
    /// Makes one model the default of its role (or none, with `None`).
    async fn set_default_model(
        &self,
        id: Option<i64>,
        role: DefaultModel,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    async fn insert_usage(&self, record: &UsageRecord) -> StoreResult<()>;
    async fn usage_summary(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
    ) -> StoreResult<Vec<UsageLine>>;
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Inserts a new run with its first events, in one transaction.
    async fn insert_run(&self, run: &Run, events: &[Event]) -> StoreResult<()>;
    async fn run(&self, id: &str) -> StoreResult<Option<Run>>;
    /// Saves a run's progress with its new steps and events and the usage of its model
    /// calls since the last save, if no one else advanced it since `expected_event_seq`;
    /// `false` when someone did (nothing is written then).
    async fn save_run(
        &self,
        run: &Run,
        steps: &[Step],
        events: &[Event],
        usage: &[UsageRecord],
        expected_event_seq: i64,
    ) -> StoreResult<bool>;
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    async fn run_steps(&self, run_id: &str) -> StoreResult<Vec<Step>>;
    async fn run_events(&self, run_id: &str, after_seq: i64) -> StoreResult<Vec<Event>>;
    /// The thread's unfinished (`running` or `waiting`) run, if any.
    async fn thread_active_run(&self, thread_id: &str) -> StoreResult<Option<Run>>;
    /// Renews the leases of runs this process advances (those still `running`): their
    /// heartbeat becomes `now`, and their partial answer the one given (or none).
    async fn renew_run_leases(
        &self,
        leases: &[crate::runs::RunLease],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Fails the `running` runs (only `only`, when given) whose heartbeat and last save
    /// are both older than `before`, with `failure`, moving their event sequence on so a
    /// process still holding one cannot save it; returns them.
    async fn fail_expired_runs(
        &self,
        before: DateTime<Utc>,
        only: Option<&str>,
        failure: &crate::runs::RunFailure,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<crate::runs::ExpiredRun>>;
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
pub trait WidgetStore: Send + Sync {
    async fn list_widgets(&self) -> StoreResult<Vec<Widget>>;
    async fn widget(&self, slug: &str) -> StoreResult<Option<Widget>>;
    /// A taken slug is `Conflict`.
    async fn insert_widget(&self, widget: &NewWidget, now: DateTime<Utc>) -> StoreResult<Widget>;
    async fn update_widget(
        &self,
        slug: &str,
        patch: &WidgetPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Widget>>;
    async fn delete_widget(&self, slug: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Inserts a thread, with its first item when given, in one transaction.
    async fn insert_chat_thread(
        &self,
        thread: &ChatThread,
        first_item: Option<&conversation::ThreadItem>,
    ) -> StoreResult<()>;
    async fn chat_thread(&self, id: &str) -> StoreResult<Option<ChatThread>>;
    async fn update_chat_thread(&self, thread: &ChatThread) -> StoreResult<()>;
    /// Sets the title of a thread that has none; returns the thread when it did.
    async fn title_chat_thread(
        &self,
        id: &str,
        title: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ChatThread>>;
    /// Deletes a thread with its items and feedback.
    async fn delete_chat_thread(&self, id: &str) -> StoreResult<bool>;
    /// A user's threads after the cursor (by creation time); `true` when more follow.
    /// `end_user` `None` lists the user's own threads; `Some` those of that session end
    /// user.
    async fn list_chat_threads(
        &self,
        user_id: i64,
        end_user: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<(Vec<ChatThread>, bool)>;
    /// Appends an item at the end of its thread.
    async fn insert_chat_item(&self, item: &conversation::ThreadItem) -> StoreResult<()>;
    /// Replaces an item in place, or appends it when it is new.
    async fn save_chat_item(&self, item: &conversation::ThreadItem) -> StoreResult<()>;
    async fn chat_item(
        &self,
        thread_id: &str,
        item_id: &str,
    ) -> StoreResult<Option<conversation::ThreadItem>>;
    /// Items after the cursor in creation order; hidden ones only when asked.
    async fn list_chat_items(
        &self,
        thread_id: &str,
        page: &PageRequest,
        include_hidden: bool,
    ) -> StoreResult<(Vec<conversation::ThreadItem>, bool)>;
    /// Deletes the items created after `item_id`; returns how many.
    async fn delete_chat_items_after(&self, thread_id: &str, item_id: &str) -> StoreResult<u64>;
    async fn put_chat_feedback(
        &self,
        thread_id: &str,
        item_id: &str,
        user_id: i64,
        kind: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Feedback, newest first: all of it, or one thread's.
    async fn list_chat_feedback(
        &self,
        thread_id: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<crate::chat::Feedback>>;
    async fn insert_chat_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()>;
    async fn chat_attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>>;
    /// Saves `thread_id`, `size` and `uploaded`.
    async fn update_chat_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()>;
    async fn delete_chat_attachment(&self, id: &str) -> StoreResult<bool>;
    /// Up to `limit` attachments whose URL token is stored in plain text (made before
    /// tokens were hashed): (id, token).
    async fn plain_attachment_tokens(&self, limit: i64) -> StoreResult<Vec<(String, String)>>;
    /// Replaces an attachment's stored token with `hash`.
    async fn set_attachment_token_hash(&self, id: &str, hash: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_api_key(
        &self,
        key: &crate::auth::api_keys::NewApiKey,
        now: DateTime<Utc>,
    ) -> StoreResult<crate::auth::api_keys::ApiKey>;
    async fn api_keys(&self) -> StoreResult<Vec<crate::auth::api_keys::ApiKey>>;
    async fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> StoreResult<Option<crate::auth::api_keys::ApiKey>>;
    /// `false` when no unrevoked key has this id.
    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn touch_api_key(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    async fn insert_chat_session(
        &self,
        session: &crate::chat::sessions::ChatSession,
        secret_hash: &str,
    ) -> StoreResult<()>;
    async fn chat_session(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::chat::sessions::ChatSession>>;
    async fn chat_session_by_hash(
        &self,
        hash: &str,
    ) -> StoreResult<Option<crate::chat::sessions::ChatSession>>;
    async fn cancel_chat_session(&self, id: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// Knowledge bases: stores, documents, chunks with their indexes, and ingestion jobs.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    async fn insert_vector_store(
        &self,
        store: &NewVectorStore,
        now: DateTime<Utc>,
    ) -> StoreResult<VectorStore>;
    /// Every store, with its document count, by slug.
    async fn vector_stores(&self) -> StoreResult<Vec<VectorStore>>;
    async fn vector_store(&self, slug: &str) -> StoreResult<Option<VectorStore>>;
    async fn vector_store_by_id(&self, id: i64) -> StoreResult<Option<VectorStore>>;
    /// Writes the store's fields. `drop_vectors` removes every vector of the store (its
    /// model changed) and queues `job` in the same transaction.
    async fn update_vector_store(
        &self,
        store: &VectorStore,
        drop_vectors: bool,
        job: Option<&NewJob>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<VectorStore>>;
    async fn delete_vector_store(&self, id: i64) -> StoreResult<bool>;

    /// Replaces the document with the same `doc_id` (its chunks go with it) by `doc` and
    /// `chunks`, and queues `job` for it, in one transaction. Returns the document and the
    /// job's id. Refuses vectors whose dimension differs from the store's
    /// (`Conflict { constraint: "vector_dimensions" }`), and vectors made by `embedded_by`
    /// when that is no longer the store's model (`Conflict { constraint: "vector_model" }`).
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
    ) -> StoreResult<(Document, Option<i64>)>;
    /// Replaces a document's chunks and marks it ready; refuses vectors as `put_document`.
    async fn set_document_chunks(
        &self,
        document_id: i64,
        chunks: &[NewChunk],
        embedded_by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn set_document_status(
        &self,
        document_id: i64,
        status: DocumentStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn documents(&self, store_id: i64) -> StoreResult<Vec<Document>>;
    async fn document(&self, store_id: i64, doc_id: &str) -> StoreResult<Option<Document>>;
    async fn document_by_id(&self, id: i64) -> StoreResult<Option<Document>>;
    async fn document_chunks(&self, document_id: i64) -> StoreResult<Vec<Chunk>>;
    async fn delete_document(&self, document_id: i64) -> StoreResult<bool>;

    /// The `limit` chunks nearest to `vector` (cosine), as `(chunk id, similarity)`, best
    /// first: through the vector index, or exactly within `documents` when given.
    async fn dense_search(
        &self,
        store_id: i64,
        dims: i32,
        vector: &[f32],
        limit: usize,
        documents: Option<&[i64]>,
    ) -> StoreResult<Vec<(i64, f64)>>;
    /// The `limit` chunks that best match any of `terms`, as `(chunk id, relevance)`.
    async fn text_search(
        &self,
        store_id: i64,
        terms: &[String],
        limit: usize,
        documents: Option<&[i64]>,
    ) -> StoreResult<Vec<(i64, f64)>>;
    /// The cosine similarity of `vector` to each of `chunks` that has a vector of `dims`.
    async fn dense_scores(
        &self,
        dims: i32,
        vector: &[f32],
        chunks: &[i64],
    ) -> StoreResult<Vec<(i64, f64)>>;
    async fn chunk_hits(&self, chunks: &[i64]) -> StoreResult<Vec<ChunkHit>>;
    async fn count_store_chunks(&self, store_id: i64) -> StoreResult<i64>;
    async fn count_chunks_without_vectors(&self, store_id: i64) -> StoreResult<i64>;
    /// `(id, text)` of chunks without a vector, by id after `after`.
    async fn chunks_without_vectors(
        &self,
        store_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, String)>>;
    /// Sets the vectors of chunks that have none; refuses them as `put_document`.
    async fn set_chunk_vectors(
        &self,
        store_id: i64,
        vectors: &[(i64, Vec<f32>)],
        embedded_by: i64,
    ) -> StoreResult<()>;

    /// Claims the oldest job that is due, whose worker's lease ran out, or that was held
    /// for its bytes for over a minute.
    async fn claim_knowledge_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> StoreResult<Option<Job>>;
    /// Lets a held job run (its upload's bytes have landed).
    async fn release_knowledge_job(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Saves a running job's state; `false` when it is no longer this worker's running job
    /// (another worker claimed it since, or it was superseded).
    async fn update_knowledge_job(&self, job: &Job) -> StoreResult<bool>;
    async fn knowledge_job(&self, id: i64) -> StoreResult<Option<Job>>;
    /// A store's jobs, newest first (at most 100).
    async fn knowledge_jobs(&self, store_id: i64) -> StoreResult<Vec<Job>>;
}

/// Registered MCP servers; secrets arrive sealed.
#[async_trait]
pub trait McpStore {
    /// A taken label is `Conflict`.
    async fn insert_mcp_server(&self, server: &McpServer) -> StoreResult<McpServer>;
    async fn mcp_servers(&self) -> StoreResult<Vec<McpServer>>;
    async fn mcp_server(&self, id: i64) -> StoreResult<Option<McpServer>>;
    /// Saves every field but the tool cache and creation time; `None` when it is gone.
    async fn update_mcp_server(&self, server: &McpServer) -> StoreResult<Option<McpServer>>;
    async fn delete_mcp_server(&self, id: i64) -> StoreResult<bool>;
    async fn set_mcp_tools(&self, id: i64, tools: &[McpTool], at: DateTime<Utc>)
    -> StoreResult<()>;

    /// Offers a workflow as a tool, or renames it; a name another workflow has is `Conflict`.
    async fn expose_workflow(
        &self,
        workflow_id: i64,
        tool_name: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<ExposedWorkflow>;
    async fn unexpose_workflow(&self, workflow_id: i64) -> StoreResult<bool>;
    async fn exposed_workflows(&self) -> StoreResult<Vec<ExposedWorkflow>>;

    /// Saves only a server's tokens (and `updated_at`). With `expected_refresh`, only while
    /// the stored refresh token is still that one (another replica did not refresh first);
    /// `false` when nothing was saved.
    async fn set_mcp_tokens(
        &self,
        server: &McpServer,
        expected_refresh: Option<&str>,
    ) -> StoreResult<bool>;
    async fn insert_oauth_session(&self, session: &OAuthSession) -> StoreResult<()>;
    async fn oauth_session(&self, state: &str) -> StoreResult<Option<OAuthSession>>;
    /// Ends a pending authorisation once: `false` when it was not pending any more.
    async fn finish_oauth_session(
        &self,
        state: &str,
        status: &str,
        error: Option<&str>,
    ) -> StoreResult<bool>;
}

/// Defined tools; secret header values arrive sealed.
#[async_trait]
pub trait ToolStore {
    /// A taken name is `Conflict`.
    async fn insert_tool(&self, tool: &ToolDef) -> StoreResult<ToolDef>;
    async fn tools(&self) -> StoreResult<Vec<ToolDef>>;
    async fn tool(&self, id: i64) -> StoreResult<Option<ToolDef>>;
    async fn tool_by_name(&self, name: &str) -> StoreResult<Option<ToolDef>>;
    async fn update_tool(&self, tool: &ToolDef) -> StoreResult<Option<ToolDef>>;
    async fn delete_tool(&self, id: i64) -> StoreResult<bool>;
}

/// What is stored, and deleting it in bounded batches (`storage`): each delete removes at
/// most `limit` rows of its main table (what cascades from them goes too) and says how
/// many.
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    async fn storage_stats(&self) -> StoreResult<crate::storage::StorageStats>;
    async fn cleanup_stats(&self) -> StoreResult<crate::storage::CleanupStats>;
    /// Threads whose last activity (a user's message) came before `before`.
    async fn delete_threads_idle_since(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Finished runs (completed, failed, cancelled) that finished before `before`.
    async fn delete_runs_finished_before(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<u64>;
    async fn delete_usage_before(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    /// Chat uploads no thread holds, made before `before`, oldest first.
    async fn unreferenced_attachments(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    /// Workflow versions neither in production nor their workflow's latest, and no
    /// unfinished run's.
    async fn delete_old_versions(&self, limit: i64) -> StoreResult<u64>;
    /// Workflows other than the ChatKit default.
    async fn delete_workflows_but_default(&self, limit: i64) -> StoreResult<u64>;
    /// The blob keys records name (uploaded attachments, uploaded knowledge files), in
    /// key order after `after`, at most `limit`.
    async fn blob_keys(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<String>>;
}

#[async_trait]
pub trait Store:
    UserStore
    + SettingsStore
    + WorkflowStore
    + ModelStore
    + UsageStore
    + RunStore
    + WidgetStore
    + ChatStore
    + KeyStore
    + KnowledgeStore
    + McpStore
    + ToolStore
    + HousekeepingStore
    + Send
    + Sync
{
    fn backend_name(&self) -> &'static str;
    async fn health(&self) -> StoreHealth;
    fn pool_stats(&self) -> PoolStats;
}
