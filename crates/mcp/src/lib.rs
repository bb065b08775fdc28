//! A Model Context Protocol client: connects to a server over streamable HTTP, the older
//! HTTP+SSE transport or a stdio child process, lists its tools and calls them; and
//! `Connector`, the platform's `domain::mcp::McpConnector` over it.
//!
//! Invariants:
//! - Every request has a deadline (`ServerConfig::timeout`); a late answer is dropped.
//! - A connection that dropped (the process ended, the stream closed, the session expired)
//!   is opened again on the next request, with a fresh `initialize`; a request in flight
//!   when it dropped fails and is not replayed (a tool call may have side effects).
//! - A stdio child gets only `PATH`, `HOME`, the locale and its own `env` from our
//!   environment, and is killed when the client is dropped.
//! - HTTP redirects are not followed, so the configured headers never reach another host.

mod connector;
mod http;
mod rpc;
mod sse;
mod stdio;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::RwLock;

pub use connector::Connector;

/// The protocol version we ask for; servers may answer with an older one we also speak.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Versions negotiated through `initialize` that this client speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// How we reach a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP: the current transport.
    StreamableHttp,
    /// HTTP with server-sent events (protocol 2024-11-05), still common.
    Sse,
    /// A child process on this machine.
    Stdio,
}

impl Transport {
    pub const ALL: &'static [Transport] =
        &[Transport::StreamableHttp, Transport::Sse, Transport::Stdio];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        }
    }

    /// Also takes the seed's name for SSE, `http_sse`.
    pub fn parse(text: &str) -> Option<Transport> {
        match text {
            "http_sse" => Some(Transport::Sse),
            other => Transport::ALL.iter().copied().find(|t| t.as_str() == other),
        }
    }
}

/// Everything needed to connect; secrets included, so it is never logged.
#[derive(Clone)]
pub struct ServerConfig {
    /// For logs.
    pub label: String,
    pub transport: Transport,
    pub url: Option<String>,
    /// Sent with every HTTP request (e.g. `Authorization: Bearer …`).
    pub headers: Vec<(String, String)>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The deadline of each request, and of connecting.
    pub timeout: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("label", &self.label)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpError {
    #[error("the server refused the credentials (401): {0}")]
    Unauthorized(String),
    #[error("the server forbade access (403): {0}")]
    Forbidden(String),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("could not reach the server: {0}")]
    Connection(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    #[error("the server answered with error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("the connection closed: {0}")]
    Closed(String),
    #[error("the server's session expired")]
    SessionExpired,
    #[error("{0}")]
    Config(String),
}

/// A tool as the server describes it (the platform's type, which reads the wire shape).
pub use domain::mcp::McpTool as Tool;

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    /// Content blocks (`text`, `image`, `resource`, …) as sent.
    pub content: Vec<Value>,
    pub structured: Option<Value>,
    /// The tool itself failed (its message is in `content`).
    pub is_error: bool,
}

impl CallResult {
    /// The result as text for a model: text blocks joined, other blocks as JSON, or the
    /// structured result when there is no content.
    pub fn text(&self) -> String {
        if self.content.is_empty() {
            return self
                .structured
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
        }
        self.content
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block["text"].as_str().unwrap_or("").to_string(),
                _ => block.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Who answered `initialize`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    pub protocol_version: String,
    pub instructions: Option<String>,
}

enum Conn {
    Stdio(stdio::Stdio),
    Sse(http::LegacySse),
    Http(http::Streamable),
}

impl Conn {
    async fn open(config: &ServerConfig) -> Result<Conn, McpError> {
        Ok(match config.transport {
            Transport::Stdio => Conn::Stdio(stdio::Stdio::spawn(config).await?),
            Transport::Sse => Conn::Sse(http::LegacySse::connect(config).await?),
            Transport::StreamableHttp => Conn::Http(http::Streamable::new(config)?),
        })
    }

    fn is_closed(&self) -> bool {
        match self {
            Conn::Stdio(c) => c.pending.is_closed(),
            Conn::Sse(c) => c.pending.is_closed(),
            Conn::Http(_) => false,
        }
    }

    async fn request(&self, id: u64, message: &Value) -> Result<Value, McpError> {
        let (pending, sent) = match self {
            Conn::Http(c) => return c.request(id, message).await,
            Conn::Stdio(c) => {
                let rx = c.pending.register(id)?;
                (&c.pending, c.send(message).await.map(|()| rx))
            }
            Conn::Sse(c) => {
                let rx = c.pending.register(id)?;
                (&c.pending, c.send(message).await.map(|()| rx))
            }
        };
        let rx = match sent {
            Ok(rx) => rx,
            Err(err) => {
                pending.forget(id);
                return Err(err);
            }
        };
        rx.await
            .map_err(|_| McpError::Closed("the connection dropped".into()))?
    }

    async fn notify(&self, message: &Value) -> Result<(), McpError> {
        match self {
            Conn::Http(c) => c.notify(message).await,
            Conn::Stdio(c) => c.send(message).await,
            Conn::Sse(c) => c.send(message).await,
        }
    }

    fn forget(&self, id: u64) {
        match self {
            Conn::Stdio(c) => c.pending.forget(id),
            Conn::Sse(c) => c.pending.forget(id),
            Conn::Http(_) => {}
        }
    }

    async fn close(&self) {
        match self {
            Conn::Stdio(c) => c.close().await,
            Conn::Sse(c) => c.close().await,
            Conn::Http(c) => c.close().await,
        }
    }
}

/// A connected client; share it (`Arc`) to reuse one session for many calls.
pub struct Client {
    config: ServerConfig,
    conn: RwLock<(Arc<Conn>, ServerInfo)>,
    next_id: AtomicU64,
}

impl Client {
    /// Opens the connection and runs the `initialize` handshake.
    pub async fn connect(config: ServerConfig) -> Result<Client, McpError> {
        let next_id = AtomicU64::new(1);
        let opened = open(&config, &next_id).await?;
        Ok(Client {
            config,
            conn: RwLock::new(opened),
            next_id,
        })
    }

    /// The server's answer to the latest `initialize`.
    pub async fn server_info(&self) -> ServerInfo {
        self.conn.read().await.1.clone()
    }

    /// Every tool, following the server's pages.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(cursor) => json!({"cursor": cursor}),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            let listed = page
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| McpError::Protocol("tools/list has no `tools`".into()))?;
            // A tool the server describes wrongly is left out, not the whole list.
            tools.extend(
                listed
                    .iter()
                    .filter_map(|t| serde_json::from_value::<Tool>(t.clone()).ok()),
            );
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tools)
    }

    /// Calls a tool. A tool's own failure is `Ok` with `is_error`; an unknown tool or
    /// bad arguments are usually `Rpc` errors.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<CallResult, McpError> {
        let result = self
            .request("tools/call", json!({"name": name, "arguments": arguments}))
            .await?;
        Ok(CallResult {
            content: result
                .get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            structured: result.get("structuredContent").cloned(),
            is_error: result
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Ends the session (a stdio child is stopped).
    pub async fn close(&self) {
        self.conn.read().await.0.close().await;
    }

    /// One request with its deadline, opening the connection again first when it dropped,
    /// and once more when an HTTP session expired before the request was handled.
    async fn request(&self, method: &str, params: Value) -> Result<Value, McpError> {
        let conn = self.live().await?;
        match self.send(&conn, method, params.clone()).await {
            Err(McpError::SessionExpired) => {
                let conn = self.reopen(&conn).await?;
                self.send(&conn, method, params).await
            }
            other => other,
        }
    }

    async fn send(&self, conn: &Conn, method: &str, params: Value) -> Result<Value, McpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        call(conn, id, method, params, self.config.timeout).await
    }

    async fn live(&self) -> Result<Arc<Conn>, McpError> {
        let conn = self.conn.read().await.0.clone();
        if conn.is_closed() {
            return self.reopen(&conn).await;
        }
        Ok(conn)
    }

    async fn reopen(&self, dropped: &Arc<Conn>) -> Result<Arc<Conn>, McpError> {
        let mut slot = self.conn.write().await;
        if !Arc::ptr_eq(&slot.0, dropped) {
            // Another caller reopened it already.
            return Ok(slot.0.clone());
        }
        dropped.close().await;
        tracing::debug!(server = %self.config.label, "reconnecting to the MCP server");
        *slot = open(&self.config, &self.next_id).await?;
        Ok(slot.0.clone())
    }
}

async fn call(
    conn: &Conn,
    id: u64,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, McpError> {
    let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let response = match tokio::time::timeout(timeout, conn.request(id, &message)).await {
        Ok(response) => response?,
        Err(_) => {
            conn.forget(id);
            return Err(McpError::Timeout);
        }
    };
    if let Some(error) = response.get("error") {
        return Err(McpError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(500)
                .collect(),
        });
    }
    response
        .get("result")
        .cloned()
        .ok_or_else(|| McpError::Protocol("a response has neither result nor error".into()))
}

/// Opens a connection and runs `initialize`, then `notifications/initialized`.
async fn open(
    config: &ServerConfig,
    next_id: &AtomicU64,
) -> Result<(Arc<Conn>, ServerInfo), McpError> {
    tokio::time::timeout(config.timeout, open_within(config, next_id))
        .await
        .map_err(|_| McpError::Timeout)?
}

/// [`open`] without its deadline.
async fn open_within(
    config: &ServerConfig,
    next_id: &AtomicU64,
) -> Result<(Arc<Conn>, ServerInfo), McpError> {
    let conn = Conn::open(config).await?;
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let params = json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "switchyard", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = match call(&conn, id, "initialize", params, config.timeout).await {
        Ok(result) => result,
        Err(err) => {
            conn.close().await;
            return Err(err);
        }
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        conn.close().await;
        return Err(McpError::Protocol(format!(
            "the server speaks protocol version `{version}`, which this client does not"
        )));
    }
    if let Conn::Http(http) = &conn {
        http.set_protocol(&version);
    }
    if let Err(err) = conn
        .notify(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
    {
        conn.close().await;
        return Err(err);
    }
    let info = ServerInfo {
        name: result["serverInfo"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        version: result["serverInfo"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        protocol_version: version,
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    Ok((Arc::new(conn), info))
}
