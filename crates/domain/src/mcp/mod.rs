//! MCP, both ways: the servers administrators register (secrets encrypted, hints only in
//! answers), probing them, and the tool lists cached from them, here; their OAuth in
//! [`oauth`]; Switchyard as an MCP server in [`server`]. The protocol itself is behind
//! [`McpConnector`], implemented by the `mcp` crate.

pub mod oauth;
pub mod server;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Services,
    auth::{AuthError, Principal},
    crypto::hint,
    error::{DomainError, ErrorKind},
    store::StoreError,
};

/// How Switchyard reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpTransport {
    StreamableHttp,
    /// HTTP with server-sent events (protocol 2024-11-05): the seed's only transport.
    Sse,
    /// A child process of the server.
    Stdio,
}

impl McpTransport {
    pub const ALL: &'static [McpTransport] = &[
        McpTransport::StreamableHttp,
        McpTransport::Sse,
        McpTransport::Stdio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            McpTransport::StreamableHttp => "streamable_http",
            McpTransport::Sse => "sse",
            McpTransport::Stdio => "stdio",
        }
    }

    /// Also takes the seed's name for SSE, `http_sse`.
    pub fn parse(text: &str) -> Option<McpTransport> {
        match text {
            "http_sse" => Some(McpTransport::Sse),
            other => McpTransport::ALL
                .iter()
                .copied()
                .find(|t| t.as_str() == other),
        }
    }
}

/// A registered server as stored: secrets sealed, names and hints in the clear.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer {
    pub id: i64,
    pub label: String,
    pub transport: McpTransport,
    pub url: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env_encrypted: Option<String>,
    pub env_names: Vec<String>,
    pub headers_encrypted: Option<String>,
    pub header_names: Vec<String>,
    pub authorization_encrypted: Option<String>,
    pub authorization_hint: Option<String>,
    pub access_token_encrypted: Option<String>,
    pub access_token_hint: Option<String>,
    pub refresh_token_encrypted: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret_encrypted: Option<String>,
    pub oauth_scope: Option<String>,
    pub oauth_metadata: Option<Value>,
    pub is_active: bool,
    pub timeout_secs: u64,
    pub max_concurrency: u32,
    /// The tools as the server listed them at `tools_cache_updated_at`.
    pub tools_cache: Option<Vec<McpTool>>,
    pub tools_cache_updated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tool of a server, in MCP's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "inputSchema", default = "object_schema")]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

fn object_schema() -> Value {
    json!({"type": "object"})
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolResult {
    /// The content as text for a model.
    pub text: String,
    pub content: Vec<Value>,
    pub structured: Option<Value>,
    /// The tool reported a failure of its own.
    pub is_error: bool,
}

/// Why talking to a server failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum McpFailure {
    #[error("the server refused the credentials: {0}")]
    Unauthorized(String),
    #[error("the server forbade access: {0}")]
    Forbidden(String),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("could not reach the server: {0}")]
    Unreachable(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    #[error("the server answered with an error: {0}")]
    Rejected(String),
    #[error("{0}")]
    Invalid(String),
}

impl McpFailure {
    /// The probe status this failure reports.
    pub fn status(&self) -> &'static str {
        match self {
            McpFailure::Unauthorized(_) => "unauthorized",
            McpFailure::Forbidden(_) => "forbidden",
            McpFailure::Timeout => "timeout",
            McpFailure::Unreachable(_) => "unreachable",
            McpFailure::Protocol(_) => "protocol_error",
            McpFailure::Rejected(_) => "error",
            McpFailure::Invalid(_) => "invalid",
        }
    }
}

/// A server with its secrets opened, to connect with; never logged.
#[derive(Clone)]
pub struct McpConnection {
    /// `None` for a configuration being tried before it is saved.
    pub id: Option<i64>,
    pub label: String,
    pub transport: McpTransport,
    pub url: Option<String>,
    pub headers: Vec<(String, String)>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    pub max_concurrency: u32,
    /// Changes whenever the server's settings change, so a kept session is not reused
    /// with old ones.
    pub revision: DateTime<Utc>,
}

impl std::fmt::Debug for McpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpConnection")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field("headers", &"[redacted]")
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Speaks MCP. Implementations keep sessions per server (by id and revision) for reuse,
/// reconnect dropped ones, and bound every call by the connection's timeout.
#[async_trait]
pub trait McpConnector: Send + Sync {
    /// Opens a fresh session, lists the tools, and closes it.
    async fn probe(&self, server: &McpConnection) -> Result<Vec<McpTool>, McpFailure>;
    /// Calls a tool, on a kept session when there is one.
    async fn call_tool(
        &self,
        server: &McpConnection,
        name: &str,
        arguments: Value,
    ) -> Result<McpToolResult, McpFailure>;
    /// GETs a JSON document (OAuth discovery); a status other than 2xx is `Rejected`.
    async fn fetch_json(&self, url: &str) -> Result<Value, McpFailure>;
    /// POSTs a JSON body and returns the JSON answer (client registration).
    async fn post_json(&self, url: &str, body: &Value) -> Result<Value, McpFailure>;
    /// POSTs a form and returns the JSON answer (token requests); an OAuth error answer is
    /// `Rejected` with its `error` and `error_description`.
    async fn post_form(&self, url: &str, form: &[(String, String)]) -> Result<Value, McpFailure>;
}

/// Settings of the `[mcp]` table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSettings {
    /// Whether administrators may register stdio servers (commands this server runs).
    pub allow_stdio: bool,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings { allow_stdio: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP server {0} not found")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("an MCP server labelled `{0}` exists already")]
    Conflict(String),
    #[error("a stored secret of this server cannot be decrypted with the current key")]
    Undecryptable,
    #[error(transparent)]
    Access(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for McpError {
    fn kind(&self) -> ErrorKind {
        match self {
            McpError::NotFound(_) => ErrorKind::NotFound,
            McpError::Invalid(_) => ErrorKind::Invalid,
            McpError::Conflict(_) => ErrorKind::Conflict,
            McpError::Access(err) => err.kind(),
            McpError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            McpError::Undecryptable | McpError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            McpError::NotFound(_) => "mcp_server_not_found",
            McpError::Invalid(_) => "invalid_field",
            McpError::Conflict(_) => "conflict",
            McpError::Undecryptable => "secret_undecryptable",
            McpError::Access(err) => err.code(),
            McpError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            McpError::Store(_) => "internal_error",
        }
    }
}

pub type McpResult<T> = Result<T, McpError>;

/// What an administrator sets; `None` leaves a field as it is (or takes the default).
/// For secrets, `Some(None)` removes them.
#[derive(Debug, Clone, Default)]
pub struct McpServerInput {
    pub label: Option<String>,
    pub transport: Option<McpTransport>,
    pub url: Option<Option<String>>,
    pub command: Option<Option<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub authorization: Option<Option<String>>,
    pub access_token: Option<Option<String>>,
    pub refresh_token: Option<Option<String>>,
    pub oauth_client_id: Option<Option<String>>,
    pub oauth_client_secret: Option<Option<String>>,
    pub oauth_scope: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub timeout_secs: Option<u64>,
    pub max_concurrency: Option<u32>,
}

fn invalid(message: impl Into<String>) -> McpError {
    McpError::Invalid(message.into())
}

/// Seals a secret: `Some(Some(s))` sets it, `Some(None)` (or blank) removes it, `None`
/// keeps the current one.
fn seal(
    services: &Services,
    input: Option<Option<String>>,
    current: (Option<String>, Option<String>),
) -> (Option<String>, Option<String>) {
    match input {
        Some(Some(secret)) if !secret.trim().is_empty() => {
            let secret = secret.trim();
            (
                Some(services.secret_box.encrypt(secret)),
                Some(hint(secret)),
            )
        }
        Some(_) => (None, None),
        None => current,
    }
}

fn seal_map(
    services: &Services,
    map: Option<BTreeMap<String, String>>,
    current: (Option<String>, Vec<String>),
    what: &str,
) -> McpResult<(Option<String>, Vec<String>)> {
    let Some(map) = map else {
        return Ok(current);
    };
    for (name, value) in &map {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(invalid(format!("`{name}` is not a valid {what} name")));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(invalid(format!(
                "the value of {what} `{name}` cannot contain line breaks"
            )));
        }
    }
    if map.is_empty() {
        return Ok((None, Vec::new()));
    }
    let json = serde_json::to_string(&map).expect("a string map serialises");
    Ok((
        Some(services.secret_box.encrypt(&json)),
        map.keys().cloned().collect(),
    ))
}

fn check_url(url: &str) -> McpResult<String> {
    let url = url.trim().to_string();
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.contains(char::is_whitespace)
        && !authority.is_empty()
        && !authority.contains('@');
    if valid {
        Ok(url)
    } else {
        Err(invalid(
            "url must be an http(s) URL such as https://example.com/mcp, with no credentials in it",
        ))
    }
}

/// Applies `input` over `base` (the server being edited, or nothing for a new one).
fn apply(
    services: &Services,
    base: Option<&McpServer>,
    input: McpServerInput,
    now: DateTime<Utc>,
) -> McpResult<McpServer> {
    let label = match input.label.or(base.map(|b| b.label.clone())) {
        Some(label) if !label.trim().is_empty() && label.trim().chars().count() <= 128 => {
            label.trim().to_string()
        }
        _ => return Err(invalid("label must be 1 to 128 characters")),
    };
    let transport = input
        .transport
        .or(base.map(|b| b.transport))
        .unwrap_or(McpTransport::StreamableHttp);
    let url = match input.url {
        Some(url) => url.filter(|u| !u.trim().is_empty()),
        None => base.and_then(|b| b.url.clone()),
    };
    let command = match input.command {
        Some(command) => command.filter(|c| !c.trim().is_empty()),
        None => base.and_then(|b| b.command.clone()),
    };
    let args = input
        .args
        .or(base.map(|b| b.args.clone()))
        .unwrap_or_default();
    let (url, command, args) = match transport {
        McpTransport::Stdio => {
            if !services.mcp_settings.allow_stdio {
                return Err(invalid(
                    "stdio servers are turned off on this server (mcp.allow_stdio)",
                ));
            }
            let Some(command) = command else {
                return Err(invalid("a stdio server needs a command"));
            };
            if command.contains('\0') || args.iter().any(|a| a.contains('\0')) {
                return Err(invalid("the command and its arguments cannot contain NUL"));
            }
            (None, Some(command.trim().to_string()), args)
        }
        _ => {
            let Some(url) = url else {
                return Err(invalid(format!(
                    "a {} server needs a url",
                    transport.as_str()
                )));
            };
            (Some(check_url(&url)?), None, Vec::new())
        }
    };
    let (env_encrypted, env_names) = seal_map(
        services,
        input.env,
        (
            base.and_then(|b| b.env_encrypted.clone()),
            base.map(|b| b.env_names.clone()).unwrap_or_default(),
        ),
        "environment variable",
    )?;
    let (headers_encrypted, header_names) = seal_map(
        services,
        input.headers,
        (
            base.and_then(|b| b.headers_encrypted.clone()),
            base.map(|b| b.header_names.clone()).unwrap_or_default(),
        ),
        "header",
    )?;
    if header_names
        .iter()
        .any(|n| n.eq_ignore_ascii_case("authorization"))
    {
        return Err(invalid(
            "set the Authorization header with `authorization`, where it is kept apart",
        ));
    }
    let (authorization_encrypted, authorization_hint) = seal(
        services,
        input.authorization,
        (
            base.and_then(|b| b.authorization_encrypted.clone()),
            base.and_then(|b| b.authorization_hint.clone()),
        ),
    );
    let (access_token_encrypted, access_token_hint) = seal(
        services,
        input.access_token,
        (
            base.and_then(|b| b.access_token_encrypted.clone()),
            base.and_then(|b| b.access_token_hint.clone()),
        ),
    );
    let (refresh_token_encrypted, _) = seal(
        services,
        input.refresh_token,
        (base.and_then(|b| b.refresh_token_encrypted.clone()), None),
    );
    let (oauth_client_secret_encrypted, _) = seal(
        services,
        input.oauth_client_secret,
        (
            base.and_then(|b| b.oauth_client_secret_encrypted.clone()),
            None,
        ),
    );
    let timeout_secs = input
        .timeout_secs
        .or(base.map(|b| b.timeout_secs))
        .unwrap_or(30);
    if !(1..=600).contains(&timeout_secs) {
        return Err(invalid("timeout_secs must be between 1 and 600"));
    }
    let max_concurrency = input
        .max_concurrency
        .or(base.map(|b| b.max_concurrency))
        .unwrap_or(4);
    if !(1..=64).contains(&max_concurrency) {
        return Err(invalid("max_concurrency must be between 1 and 64"));
    }
    let text = |input: Option<Option<String>>, current: Option<String>| match input {
        Some(value) => value.filter(|v| !v.trim().is_empty()),
        None => current,
    };
    Ok(McpServer {
        id: base.map_or(0, |b| b.id),
        label,
        transport,
        url,
        command,
        args,
        env_encrypted,
        env_names,
        headers_encrypted,
        header_names,
        authorization_encrypted,
        authorization_hint,
        access_token_encrypted,
        access_token_hint,
        refresh_token_encrypted,
        token_expires_at: base.and_then(|b| b.token_expires_at),
        oauth_client_id: text(
            input.oauth_client_id,
            base.and_then(|b| b.oauth_client_id.clone()),
        ),
        oauth_client_secret_encrypted,
        oauth_scope: text(input.oauth_scope, base.and_then(|b| b.oauth_scope.clone())),
        oauth_metadata: base.and_then(|b| b.oauth_metadata.clone()),
        is_active: input
            .is_active
            .or(base.map(|b| b.is_active))
            .unwrap_or(true),
        timeout_secs,
        max_concurrency,
        tools_cache: base.and_then(|b| b.tools_cache.clone()),
        tools_cache_updated_at: base.and_then(|b| b.tools_cache_updated_at),
        created_at: base.map_or(now, |b| b.created_at),
        updated_at: now,
    })
}

fn conflict(err: StoreError, label: &str) -> McpError {
    match err {
        StoreError::Conflict { .. } => McpError::Conflict(label.to_string()),
        other => other.into(),
    }
}

/// Every server, as an administrator manages them.
pub async fn list_servers(services: &Services, actor: &Principal) -> McpResult<Vec<McpServer>> {
    actor.admin()?;
    Ok(services.store.mcp_servers().await?)
}

/// The active servers, which any user may give an agent (callers show users their label,
/// transport and tools only).
pub async fn active_servers(services: &Services) -> McpResult<Vec<McpServer>> {
    let mut list = services.store.mcp_servers().await?;
    list.retain(|s| s.is_active);
    Ok(list)
}

/// A server, as an administrator manages it.
pub async fn get_server(services: &Services, actor: &Principal, id: i64) -> McpResult<McpServer> {
    actor.admin()?;
    server(services, id).await
}

/// A server, for the platform itself (an agent's tools, a connection).
pub(crate) async fn server(services: &Services, id: i64) -> McpResult<McpServer> {
    services
        .store
        .mcp_server(id)
        .await?
        .ok_or(McpError::NotFound(id))
}

/// Registers a server. With `refresh_tools`, it is probed and its tools cached; a server
/// that cannot be reached is still saved (the probe's report says why).
pub async fn create_server(
    services: &Services,
    actor: &Principal,
    input: McpServerInput,
    refresh_tools: bool,
) -> McpResult<(McpServer, Option<ProbeReport>)> {
    actor.admin()?;
    let server = apply(services, None, input, Utc::now())?;
    let server = services
        .store
        .insert_mcp_server(&server)
        .await
        .map_err(|err| conflict(err, &server.label))?;
    refreshed(services, server, refresh_tools).await
}

pub async fn update_server(
    services: &Services,
    actor: &Principal,
    id: i64,
    input: McpServerInput,
    refresh_tools: bool,
) -> McpResult<(McpServer, Option<ProbeReport>)> {
    actor.admin()?;
    let current = server(services, id).await?;
    let server = apply(services, Some(&current), input, Utc::now())?;
    let server = services
        .store
        .update_mcp_server(&server)
        .await
        .map_err(|err| conflict(err, &server.label))?
        .ok_or(McpError::NotFound(id))?;
    refreshed(services, server, refresh_tools).await
}

async fn refreshed(
    services: &Services,
    server: McpServer,
    refresh_tools: bool,
) -> McpResult<(McpServer, Option<ProbeReport>)> {
    if !refresh_tools || !server.is_active {
        return Ok((server, None));
    }
    let report = probe_saved(services, server.id).await?;
    Ok((self::server(services, server.id).await?, Some(report)))
}

pub async fn delete_server(services: &Services, actor: &Principal, id: i64) -> McpResult<()> {
    actor.admin()?;
    if services.store.delete_mcp_server(id).await? {
        Ok(())
    } else {
        Err(McpError::NotFound(id))
    }
}

/// Opens a server's secrets to connect with.
pub fn connection(services: &Services, server: &McpServer) -> McpResult<McpConnection> {
    let open = |sealed: &Option<String>| -> McpResult<Option<String>> {
        sealed
            .as_deref()
            .map(|s| {
                services
                    .secret_box
                    .decrypt(s)
                    .map_err(|_| McpError::Undecryptable)
            })
            .transpose()
    };
    let open_map = |sealed: &Option<String>| -> McpResult<BTreeMap<String, String>> {
        match open(sealed)? {
            Some(json) => serde_json::from_str(&json).map_err(|_| McpError::Undecryptable),
            None => Ok(BTreeMap::new()),
        }
    };
    let mut headers: Vec<(String, String)> =
        open_map(&server.headers_encrypted)?.into_iter().collect();
    // An OAuth access token wins over a fixed authorization; a bare token gets `Bearer`.
    let authorization = match open(&server.access_token_encrypted)? {
        Some(token) => Some(format!("Bearer {token}")),
        None => open(&server.authorization_encrypted)?.map(|value| {
            if value.contains(' ') {
                value
            } else {
                format!("Bearer {value}")
            }
        }),
    };
    if let Some(authorization) = authorization {
        headers.push(("Authorization".into(), authorization));
    }
    Ok(McpConnection {
        id: Some(server.id).filter(|id| *id > 0),
        label: server.label.clone(),
        transport: server.transport,
        url: server.url.clone(),
        headers,
        command: server.command.clone(),
        args: server.args.clone(),
        env: open_map(&server.env_encrypted)?,
        timeout: Duration::from_secs(server.timeout_secs),
        max_concurrency: server.max_concurrency,
        revision: server.updated_at,
    })
}

/// The outcome of a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// `ok`, `unauthorized`, `forbidden`, `timeout`, `unreachable`, `protocol_error`,
    /// `error` or `invalid`.
    pub status: &'static str,
    pub message: String,
    pub tools: Vec<McpTool>,
    pub latency_ms: u64,
}

async fn probe(services: &Services, connection: &McpConnection) -> ProbeReport {
    let started = std::time::Instant::now();
    let result = services.mcp.probe(connection).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(tools) => ProbeReport {
            status: "ok",
            message: format!("the server listed {} tools", tools.len()),
            tools,
            latency_ms,
        },
        Err(err) => ProbeReport {
            status: err.status(),
            message: err.to_string(),
            tools: Vec::new(),
            latency_ms,
        },
    }
}

/// Probes a saved server and, when it answers, caches its tools.
pub async fn probe_server(
    services: &Services,
    actor: &Principal,
    id: i64,
) -> McpResult<ProbeReport> {
    actor.admin()?;
    probe_saved(services, id).await
}

/// Probes a saved server for the platform itself (an agent whose server's tools are not
/// cached yet).
pub(crate) async fn probe_saved(services: &Services, id: i64) -> McpResult<ProbeReport> {
    let server = server(services, id).await?;
    let connection = crate::mcp::oauth::connect_info(services, server).await?;
    let report = probe(services, &connection).await;
    if report.status == "ok" {
        services
            .store
            .set_mcp_tools(id, &report.tools, Utc::now())
            .await?;
    }
    Ok(report)
}

/// Probes a configuration that is not saved (or a saved one with changes applied, when
/// `id` is given), without storing anything.
pub async fn probe_config(
    services: &Services,
    actor: &Principal,
    id: Option<i64>,
    input: McpServerInput,
) -> McpResult<ProbeReport> {
    actor.admin()?;
    let base = match id {
        Some(id) => Some(server(services, id).await?),
        None => None,
    };
    let mut input = input;
    if base.is_none() && input.label.is_none() {
        input.label = Some("probe".into());
    }
    let server = apply(services, base.as_ref(), input, Utc::now())?;
    let mut connection = connection(services, &server)?;
    connection.id = None;
    Ok(probe(services, &connection).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_take_the_seeds_name() {
        assert_eq!(McpTransport::parse("http_sse"), Some(McpTransport::Sse));
        assert_eq!(
            McpTransport::parse("streamable_http"),
            Some(McpTransport::StreamableHttp)
        );
        assert_eq!(McpTransport::parse("websocket"), None);
    }

    #[test]
    fn urls_carry_no_credentials() {
        assert!(check_url("https://mcp.example.com/mcp").is_ok());
        for bad in [
            "ftp://x/y",
            "https://user:pw@host/mcp",
            "https://",
            "http://a b/c",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
