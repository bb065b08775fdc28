//! `domain::mcp::McpConnector` over this crate's client: a session kept per saved server
//! (replaced when its settings change, closed after ten idle minutes), and a limit on the
//! calls in flight to each server.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    mcp::{McpConnection, McpConnector, McpFailure, McpTool, McpToolResult, McpTransport},
    tools::percent_encode,
};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use crate::{Client, McpError, ServerConfig, Transport};

/// How long an unused session is kept.
const IDLE: Duration = Duration::from_secs(600);

struct Kept {
    revision: DateTime<Utc>,
    client: Arc<Client>,
    permits: Arc<Semaphore>,
    used: Instant,
}

/// Sessions by server id, and a client for OAuth requests; cheap to share.
pub struct Connector {
    sessions: Mutex<HashMap<i64, Kept>>,
    http: reqwest::Client,
}

impl Default for Connector {
    fn default() -> Self {
        Connector {
            sessions: Mutex::default(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .expect("an HTTP client builds"),
        }
    }
}

fn config(server: &McpConnection) -> ServerConfig {
    ServerConfig {
        label: server.label.clone(),
        transport: match server.transport {
            McpTransport::StreamableHttp => Transport::StreamableHttp,
            McpTransport::Sse => Transport::Sse,
            McpTransport::Stdio => Transport::Stdio,
        },
        url: server.url.clone(),
        headers: server.headers.clone(),
        command: server.command.clone(),
        args: server.args.clone(),
        env: server.env.clone(),
        timeout: server.timeout,
    }
}

fn failure(err: McpError) -> McpFailure {
    match err {
        McpError::Unauthorized(m) => McpFailure::Unauthorized(m),
        McpError::Forbidden(m) => McpFailure::Forbidden(m),
        McpError::Timeout => McpFailure::Timeout,
        McpError::Connection(m) | McpError::Closed(m) => McpFailure::Unreachable(m),
        McpError::Http { status, message } => {
            McpFailure::Protocol(format!("HTTP {status}: {message}"))
        }
        McpError::Protocol(m) => McpFailure::Protocol(m),
        McpError::SessionExpired => McpFailure::Protocol("the session expired twice".into()),
        McpError::Rpc { code, message } => McpFailure::Rejected(format!("{message} ({code})")),
        McpError::Config(m) => McpFailure::Invalid(m),
    }
}

impl Connector {
    pub fn new() -> Connector {
        Connector::default()
    }

    /// The kept session of a saved server, opened (again) when needed.
    async fn session(
        &self,
        server: &McpConnection,
        id: i64,
    ) -> Result<(Arc<Client>, Arc<Semaphore>), McpFailure> {
        let mut stale = Vec::new();
        {
            let mut sessions = self.sessions.lock().await;
            sessions.retain(|key, kept| {
                // Idle sessions are closed; one whose server's settings changed since is
                // dropped, and closes when the last call on it ends (its child process is
                // killed with its last handle). A caller with older settings evicts nothing.
                if kept.used.elapsed() >= IDLE {
                    stale.push(kept.client.clone());
                    return false;
                }
                *key != id || kept.revision >= server.revision
            });
            if let Some(kept) = sessions.get_mut(&id) {
                kept.used = Instant::now();
                let found = (kept.client.clone(), kept.permits.clone());
                drop(sessions);
                close_all(stale);
                return Ok(found);
            }
        }
        close_all(stale);
        let client = Arc::new(Client::connect(config(server)).await.map_err(failure)?);
        let mut sessions = self.sessions.lock().await;
        let kept = sessions.entry(id).or_insert_with(|| Kept {
            revision: server.revision,
            client: client.clone(),
            permits: Arc::new(Semaphore::new(server.max_concurrency.max(1) as usize)),
            used: Instant::now(),
        });
        if !Arc::ptr_eq(&kept.client, &client) {
            // Another call opened one meanwhile: use it, close ours.
            close_all(vec![client]);
        }
        Ok((kept.client.clone(), kept.permits.clone()))
    }
}

fn close_all(clients: Vec<Arc<Client>>) {
    for client in clients {
        tokio::spawn(async move { client.close().await });
    }
}

#[async_trait]
impl McpConnector for Connector {
    async fn probe(&self, server: &McpConnection) -> Result<Vec<McpTool>, McpFailure> {
        let client = Client::connect(config(server)).await.map_err(failure)?;
        let tools = client.list_tools().await;
        client.close().await;
        tools.map_err(failure)
    }

    async fn call_tool(
        &self,
        server: &McpConnection,
        name: &str,
        arguments: Value,
    ) -> Result<McpToolResult, McpFailure> {
        let result = match server.id {
            Some(id) => {
                let (client, permits) = self.session(server, id).await?;
                let _permit = tokio::time::timeout(server.timeout, permits.acquire_owned())
                    .await
                    .map_err(|_| McpFailure::Timeout)?
                    .map_err(|_| McpFailure::Unreachable("the session closed".into()))?;
                client.call_tool(name, arguments).await
            }
            None => {
                let client = Client::connect(config(server)).await.map_err(failure)?;
                let result = client.call_tool(name, arguments).await;
                client.close().await;
                result
            }
        }
        .map_err(failure)?;
        Ok(McpToolResult {
            text: result.text(),
            content: result.content,
            structured: result.structured,
            is_error: result.is_error,
        })
    }

    async fn fetch_json(&self, url: &str) -> Result<Value, McpFailure> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| McpFailure::Unreachable(err.to_string()))?;
        json_answer(response).await
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Value, McpFailure> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|err| McpFailure::Unreachable(err.to_string()))?;
        json_answer(response).await
    }

    async fn post_form(&self, url: &str, form: &[(String, String)]) -> Result<Value, McpFailure> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.join("&"))
            .send()
            .await
            .map_err(|err| McpFailure::Unreachable(err.to_string()))?;
        json_answer(response).await
    }
}

/// A JSON answer, or why there is none (an OAuth error answer's code and description).
async fn json_answer(response: reqwest::Response) -> Result<Value, McpFailure> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| McpFailure::Unreachable(err.to_string()))?;
    let value: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let reason = value
            .as_ref()
            .and_then(|v| v["error"].as_str())
            .map(|e| {
                let description = value
                    .as_ref()
                    .and_then(|v| v["error_description"].as_str())
                    .unwrap_or("");
                format!("{e} {description}").trim().to_string()
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        return Err(McpFailure::Rejected(format!(
            "HTTP {}: {reason}",
            status.as_u16()
        )));
    }
    value.ok_or_else(|| McpFailure::Protocol("the answer is not JSON".into()))
}
