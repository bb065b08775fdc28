//! Durable ingestion jobs: a file's ingestion and a store's re-embedding run in the
//! background, claimed from the database by workers in any replica.
//!
//! Invariants:
//! - A job is claimed with a lease; a worker that dies (a restart, a crash) lets the
//!   lease run out and another worker takes the job over from the start. Work is
//!   idempotent: a document's chunks are replaced whole, a re-embedding skips chunks that
//!   already have a vector of the current model.
//! - A failed attempt is retried after a growing delay (5 s, 10 s, 20 s …) up to
//!   `max_attempts`; then the job and its document are marked failed with the error.
//!   One document's failure never blocks the others.

use crate::blobs::Blobs as _;
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    DocumentStatus, EMBED_BATCH, KnowledgeError, KnowledgeResult, NewChunk, blob_key, chunking,
    embed, embed_chunks,
    extract::{Extracted, FileKind},
};
use crate::{Services, store::StoreError};

/// How long a claim lasts without news from its worker.
pub const LEASE: Duration = Duration::from_secs(60);
const ATTEMPTS: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Read, cut and embed one uploaded file.
    Ingest,
    /// Embed a store's chunks again with its (new) model.
    Reembed,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Ingest => "ingest",
            JobKind::Reembed => "reembed",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        match text {
            "ingest" => Some(JobKind::Ingest),
            "reembed" => Some(JobKind::Reembed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for its upload's bytes to be stored.
    Held,
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Held => "held",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "held" => JobStatus::Held,
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub store_id: i64,
    pub document_id: Option<i64>,
    pub status: JobStatus,
    /// Attempts started so far (the running one included).
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTime<Utc>,
    pub lease_until: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    /// Progress: items (chunks) done out of `total` (0 while unknown).
    pub done: i32,
    pub total: i32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job to queue; its document (for `Ingest`) is set by the write that creates both.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub store_id: i64,
    pub max_attempts: i32,
    /// Created held: it runs once released (or a minute later, if nobody releases it).
    pub held: bool,
}

impl NewJob {
    /// A file's ingestion, held until its bytes are stored.
    pub fn ingest(store_id: i64) -> NewJob {
        NewJob {
            kind: JobKind::Ingest,
            store_id,
            max_attempts: ATTEMPTS,
            held: true,
        }
    }

    pub fn reembed(store_id: i64) -> NewJob {
        NewJob {
            kind: JobKind::Reembed,
            store_id,
            max_attempts: ATTEMPTS,
            held: false,
        }
    }
}

/// Runs jobs until `stop` is set: claims the next ready job, runs it, and sleeps until
/// woken (a job queued by this process) or a second passes (one queued elsewhere, or a
/// retry coming due).
pub async fn work(
    services: Services,
    worker: String,
    settings: KnowledgeSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let wake = services.knowledge_jobs.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        match services
            .store
            .claim_knowledge_job(&worker, Utc::now(), LEASE)
            .await
        {
            Ok(Some(job)) => {
                run_claimed(&services, job, settings.retry_base_secs).await;
                continue;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "could not claim a knowledge job"),
        }
        let mut stop = stop.clone();
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            changed = stop.changed() => if changed.is_err() {
                // The sender is gone: nobody will ever ask again.
                return;
            },
        }
    }
}

/// Runs one claimed job and records how it ended.
pub async fn run_claimed(services: &Services, mut job: Job, retry_base_secs: u64) {
    let started = std::time::Instant::now();
    // Taken over more times than it may run: its workers keep dying on it (a file that
    // hangs the parser or exhausts memory). It fails instead of running again.
    let result = if job.attempts > job.max_attempts {
        Err(KnowledgeError::Invalid(format!(
            "the job was interrupted {} times; giving up",
            job.attempts - 1
        )))
    } else {
        match job.kind {
            JobKind::Ingest => ingest(services, &mut job).await,
            JobKind::Reembed => reembed(services, &mut job).await,
        }
    };
    if let Err(KnowledgeError::JobLost) = result {
        // Another worker holds it now, or a newer job replaced it: theirs is the record.
        tracing::info!(
            job = job.id,
            kind = job.kind.as_str(),
            "stopped a knowledge job this worker no longer holds"
        );
        return;
    }
    let now = Utc::now();
    job.lease_until = None;
    job.updated_at = now;
    match result {
        Ok(()) => {
            job.status = JobStatus::Done;
            job.error = None;
            tracing::info!(
                job = job.id,
                kind = job.kind.as_str(),
                items = job.total,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "knowledge job done"
            );
        }
        Err(err) => {
            let message = err.to_string();
            let last = job.attempts >= job.max_attempts || !retryable(&err);
            job.error = Some(message.clone());
            if last {
                job.status = JobStatus::Failed;
                tracing::warn!(job = job.id, kind = job.kind.as_str(), error = %message, "knowledge job failed");
            } else {
                job.status = JobStatus::Queued;
                let delay = (retry_base_secs as i64) << (job.attempts.clamp(1, 10) - 1);
                job.run_after = now + chrono::Duration::seconds(delay);
                tracing::warn!(job = job.id, kind = job.kind.as_str(), error = %message,
                    retry_in_secs = delay, "knowledge job attempt failed");
            }
            if let Some(document_id) = job.document_id {
                let status = if last {
                    DocumentStatus::Failed
                } else {
                    DocumentStatus::Pending
                };
                let _ = services
                    .store
                    .set_document_status(document_id, status, Some(&message), now)
                    .await;
            }
        }
    }
    if let Err(err) = services.store.update_knowledge_job(&job).await {
        tracing::warn!(job = job.id, error = %err, "could not record a knowledge job's end");
    }
}

/// Failures that another attempt cannot fix.
fn retryable(err: &KnowledgeError) -> bool {
    !matches!(
        err,
        KnowledgeError::UnsupportedFile(_)
            | KnowledgeError::Invalid(_)
            | KnowledgeError::TooLarge
            | KnowledgeError::StoreNotFound(_)
            | KnowledgeError::DocumentNotFound(_)
    )
}

/// Saves progress and extends the lease.
async fn progress(services: &Services, job: &mut Job) -> KnowledgeResult<()> {
    let now = Utc::now();
    job.lease_until = Some(now + chrono::Duration::from_std(LEASE).unwrap_or_default());
    job.updated_at = now;
    if services.store.update_knowledge_job(job).await? {
        Ok(())
    } else {
        Err(KnowledgeError::JobLost)
    }
}

async fn ingest(services: &Services, job: &mut Job) -> KnowledgeResult<()> {
    let document_id = job
        .document_id
        .ok_or_else(|| KnowledgeError::Invalid("an ingestion job without a document".into()))?;
    let store = services
        .store
        .vector_store_by_id(job.store_id)
        .await?
        .ok_or_else(|| KnowledgeError::StoreNotFound(job.store_id.to_string()))?;
    let doc = services
        .store
        .document_by_id(document_id)
        .await?
        .ok_or_else(|| KnowledgeError::DocumentNotFound(document_id.to_string()))?;
    services
        .store
        .set_document_status(doc.id, DocumentStatus::Processing, None, Utc::now())
        .await?;
    let bytes = services
        .blobs
        .get(&blob_key(store.id, doc.id))
        .await?
        .ok_or_else(|| StoreError::Other("the uploaded file is not (yet) in storage".into()))?;
    let kind = FileKind::detect(
        doc.filename.as_deref().unwrap_or_default(),
        doc.mime_type.as_deref(),
    )
    .ok_or_else(|| KnowledgeError::UnsupportedFile("unsupported file type".into()))?;
    // Parsing (PDF above all) is CPU work: off the async threads.
    let extracted = tokio::task::spawn_blocking(move || kind.extract(&bytes))
        .await
        .map_err(|_| KnowledgeError::UnsupportedFile("the file could not be read".into()))?
        .map_err(KnowledgeError::UnsupportedFile)?;
    let texts: Vec<(String, Map<String, Value>)> = match extracted {
        Extracted::Text(text) => chunking::chunk_text(
            &text,
            store.chunk_tokens.max(1) as usize,
            store.chunk_overlap.max(0) as usize,
        ),
        Extracted::Entries(entries) => chunking::chunk_entries(&entries),
    };
    job.total = texts.len() as i32;
    job.done = 0;
    progress(services, job).await?;
    // Embedded batch by batch, so progress shows and the lease stays fresh.
    let mut chunks: Vec<NewChunk> = Vec::with_capacity(texts.len());
    let mut texts = texts.into_iter().peekable();
    while texts.peek().is_some() {
        let batch: Vec<_> = texts.by_ref().take(EMBED_BATCH).collect();
        let offset = chunks.len() as i32;
        let mut embedded = embed_chunks(services, &store, &doc.doc_id, batch, None).await?;
        for chunk in &mut embedded {
            chunk.index += offset;
            if let Some(object) = chunk.metadata.as_object_mut() {
                object.insert("chunk_index".into(), chunk.index.into());
            }
        }
        chunks.extend(embedded);
        job.done = chunks.len() as i32;
        progress(services, job).await?;
    }
    services
        .store
        .set_document_chunks(doc.id, &chunks, store.embedding_model_id, Utc::now())
        .await?;
    Ok(())
}

async fn reembed(services: &Services, job: &mut Job) -> KnowledgeResult<()> {
    let store = services
        .store
        .vector_store_by_id(job.store_id)
        .await?
        .ok_or_else(|| KnowledgeError::StoreNotFound(job.store_id.to_string()))?;
    let Some(model_id) = store.embedding_model_id else {
        return Ok(());
    };
    job.total = services.store.count_store_chunks(store.id).await? as i32;
    let mut after = 0i64;
    loop {
        let batch = services
            .store
            .chunks_without_vectors(store.id, after, EMBED_BATCH as i64)
            .await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.0;
        let texts: Vec<String> = batch.iter().map(|(_, text)| text.clone()).collect();
        let vectors = embed(services, model_id, &texts, None).await?;
        let items: Vec<(i64, Vec<f32>)> = batch.iter().map(|(id, _)| *id).zip(vectors).collect();
        services
            .store
            .set_chunk_vectors(store.id, &items, model_id)
            .await?;
        job.done = (job.total
            - services
                .store
                .count_chunks_without_vectors(store.id)
                .await? as i32)
            .max(0);
        progress(services, job).await?;
    }
    job.done = job.total;
    Ok(())
}

/// Starts `workers` job workers; they stop when `stop` is set.
pub fn spawn_workers(
    services: &Services,
    settings: KnowledgeSettings,
    instance: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..settings.workers)
        .map(|n| {
            let services = services.clone();
            let name = format!("{instance}/{n}");
            tokio::spawn(work(services, name, settings, stop.clone()))
        })
        .collect()
}

/// How many job workers each replica runs (the `[knowledge]` table of the configuration).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// Ingestion workers in this process; 0 leaves ingestion to other replicas.
    pub workers: usize,
    /// The delay before a failed job's first retry, in seconds; it doubles at each retry.
    pub retry_base_secs: u64,
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        KnowledgeSettings {
            workers: 2,
            retry_base_secs: 5,
        }
    }
}

/// Shared so a new job wakes an idle worker of this process at once.
pub type Wake = Arc<tokio::sync::Notify>;
