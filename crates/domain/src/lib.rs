//! Switchyard's domain: types, services and the storage traits they consume.
//!
//! This crate does no IO of its own: it reaches the database through the traits in
//! [`store`], and everything else arrives as arguments. It knows nothing of HTTP.

pub mod auth;
pub mod chat;
pub mod crypto;
pub mod error;
pub mod llm;
pub mod models;
pub mod runs;
pub mod secret;
pub mod store;
pub mod users;
pub mod widgets;
pub mod workflows;

use std::sync::Arc;

pub use error::ErrorKind;

/// Everything a service call may need, built once at start and shared by all requests.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn store::Store>,
    pub auth: Arc<auth::Auth>,
    pub secret_box: Arc<crypto::SecretBox>,
    pub llm: Arc<dyn llm::LlmClient>,
    pub engine: runs::EngineSettings,
    /// The runs this process is advancing, for live readers and cancellation.
    pub live: Arc<runs::live::LiveRuns>,
    /// Attachment bytes.
    pub blobs: Arc<dyn chat::Blobs>,
    pub chat: chat::ChatSettings,
    /// Per-session request counts of embedded ChatKit sessions.
    pub chat_limits: Arc<chat::sessions::SessionLimits>,
}
