//! Switchyard's domain: types, services and the storage traits they consume.
//!
//! This crate does no IO of its own: it reaches the database through the traits in
//! [`store`], and everything else arrives as arguments. It knows nothing of HTTP.

pub mod auth;
pub mod blobs;
pub mod chat;
pub mod crypto;
pub mod error;
pub mod knowledge;
pub mod llm;
pub mod mcp;
pub mod models;
pub mod runs;
pub mod secret;
pub mod storage;
pub mod store;
pub mod tools;
pub mod users;
pub mod widgets;
pub mod workflows;

use std::sync::Arc;

pub use auth::Principal;
pub use error::ErrorKind;

/// Everything a service call may need, built once at start and shared by all requests.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn store::Store>,
    pub auth: Arc<auth::Auth>,
    pub secret_box: Arc<crypto::SecretBox>,
    pub llm: Arc<dyn llm::LlmClient>,
    pub engine: runs::EngineSettings,
    /// How the model registry treats names it does not know.
    pub models: models::RegistrySettings,
    /// The runs this process is advancing, for live readers and cancellation.
    pub live: Arc<runs::live::LiveRuns>,
    /// Wake-ups when a run is saved, here or (PostgreSQL) on another replica.
    pub run_signals: Arc<runs::signals::RunSignals>,
    /// Uploaded bytes (attachments, knowledge files), in the configured backend.
    pub blobs: Arc<blobs::BlobRouter>,
    pub chat: chat::ChatSettings,
    /// The history of the threads this process answered last (`chat::history`).
    pub history_cache: Arc<chat::history::HistoryCache>,
    /// Per-session request counts of embedded ChatKit sessions.
    pub chat_limits: Arc<chat::sessions::SessionLimits>,
    /// Wakes this process's knowledge job workers when a job is queued.
    pub knowledge_jobs: knowledge::jobs::Wake,
    /// Speaks to MCP servers.
    pub mcp: Arc<dyn mcp::McpConnector>,
    pub mcp_settings: mcp::McpSettings,
    /// Makes defined tools' HTTP calls.
    pub outbound: Arc<dyn tools::OutboundHttp>,
    /// Held while this process refreshes an MCP server's OAuth token, so it refreshes once.
    pub mcp_refresh: Arc<tokio::sync::Mutex<()>>,
}

/// A new id for a thread, item or run: the prefix, the time in milliseconds (12 hex
/// digits), then 48 random bits (12 more). Ids made later sort later, so new rows land
/// together at the end of their indexes: a group commit touches a few pages instead of one
/// per row, and recent rows stay close together for reading.
pub(crate) fn ordered_id(prefix: &str) -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut random = [0u8; 6];
    aws_lc_rs::rand::fill(&mut random).expect("the system random generator failed");
    format!(
        "{prefix}_{:012x}{}",
        millis & 0xffff_ffff_ffff,
        hex::encode(random)
    )
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn ids_sort_by_creation() {
        let first = super::ordered_id("thr");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::ordered_id("thr");
        assert!(first < second, "{first} {second}");
        assert_eq!(first.len(), "thr_".len() + 24);
        assert_ne!(super::ordered_id("x"), super::ordered_id("x"));
    }
}
