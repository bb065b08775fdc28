//! The two HTTP transports: streamable HTTP (each request a POST answered with JSON or an
//! event stream, a session id in `Mcp-Session-Id`), and the older HTTP+SSE transport (one
//! long GET stream carrying every response, requests POSTed to the endpoint it names).

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use reqwest::{StatusCode, Url, header};
use serde_json::Value;
use tokio::sync::{Mutex, oneshot};

use crate::{McpError, ServerConfig, rpc::Pending, sse};

/// The most a single response may hold.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn client(config: &ServerConfig) -> Result<reqwest::Client, McpError> {
    reqwest::Client::builder()
        .connect_timeout(config.timeout.min(Duration::from_secs(10)))
        // Never follow a redirect with our headers (the authorization) to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| McpError::Config(format!("could not build an HTTP client: {err}")))
}

fn url(config: &ServerConfig) -> Result<Url, McpError> {
    let url = config
        .url
        .as_deref()
        .ok_or_else(|| McpError::Config("an HTTP server needs a url".into()))?;
    let parsed = Url::parse(url)
        .map_err(|err| McpError::Config(format!("`{url}` is not a valid URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(McpError::Config(
            "the url must be http:// or https://".into(),
        ));
    }
    Ok(parsed)
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    config: &ServerConfig,
) -> reqwest::RequestBuilder {
    for (name, value) in &config.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
}

/// Maps a refusal to its error; the body's start is kept for the message.
async fn refusal(response: reqwest::Response) -> McpError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message: String = body.chars().take(300).collect();
    match status {
        StatusCode::UNAUTHORIZED => McpError::Unauthorized(message),
        StatusCode::FORBIDDEN => McpError::Forbidden(message),
        status => McpError::Http {
            status: status.as_u16(),
            message,
        },
    }
}

fn connection(err: reqwest::Error) -> McpError {
    if err.is_timeout() {
        McpError::Timeout
    } else {
        McpError::Connection(err.to_string())
    }
}

async fn body(response: reqwest::Response) -> Result<Vec<u8>, McpError> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(connection)?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(McpError::Protocol(
                "the response is larger than 16 MiB".into(),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Streamable HTTP (protocol 2025-03-26 and later).
pub(crate) struct Streamable {
    http: reqwest::Client,
    url: Url,
    config: ServerConfig,
    session: std::sync::Mutex<Option<String>>,
    protocol: std::sync::Mutex<Option<String>>,
}

impl Streamable {
    pub(crate) fn new(config: &ServerConfig) -> Result<Streamable, McpError> {
        Ok(Streamable {
            http: client(config)?,
            url: url(config)?,
            config: config.clone(),
            session: std::sync::Mutex::default(),
            protocol: std::sync::Mutex::default(),
        })
    }

    pub(crate) fn set_protocol(&self, version: &str) {
        *self.protocol.lock().expect("never poisoned") = Some(version.to_string());
    }

    fn post(&self, message: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .json(message);
        if let Some(session) = self.session.lock().expect("never poisoned").clone() {
            request = request.header("mcp-session-id", session);
        }
        if let Some(version) = self.protocol.lock().expect("never poisoned").clone() {
            request = request.header("mcp-protocol-version", version);
        }
        with_headers(request, &self.config)
    }

    /// Sends a notification (or a reply); the server answers 202 with no body.
    pub(crate) async fn notify(&self, message: &Value) -> Result<(), McpError> {
        let response = self.post(message).send().await.map_err(connection)?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        Ok(())
    }

    /// Sends request `id` and reads its response from the JSON body or the event stream.
    pub(crate) async fn request(&self, id: u64, message: &Value) -> Result<Value, McpError> {
        let had_session = self.session.lock().expect("never poisoned").is_some();
        let response = self.post(message).send().await.map_err(connection)?;
        if response.status() == StatusCode::NOT_FOUND && had_session {
            *self.session.lock().expect("never poisoned") = None;
            return Err(McpError::SessionExpired);
        }
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock().expect("never poisoned") = Some(session.to_string());
        }
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            let bytes = body(response).await?;
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|err| McpError::Protocol(format!("the response is not JSON: {err}")))?;
            return find_response(value, id).ok_or_else(|| {
                McpError::Protocol("the response does not answer the request".into())
            });
        }
        let mut decoder = sse::Decoder::default();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(connection)?;
            for event in decoder.push(&chunk).map_err(McpError::Protocol)? {
                let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                if message.get("method").is_some() {
                    if let Some(reply) = crate::rpc::reply_to_server(&message) {
                        let _ = self.notify(&reply).await;
                    }
                    continue;
                }
                if let Some(found) = find_response(message, id) {
                    return Ok(found);
                }
            }
        }
        Err(McpError::Closed(
            "the response stream ended without an answer".into(),
        ))
    }

    pub(crate) async fn close(&self) {
        let session = self.session.lock().expect("never poisoned").take();
        if let Some(session) = session {
            let request = self
                .http
                .delete(self.url.clone())
                .header("mcp-session-id", session);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                with_headers(request, &self.config).send(),
            )
            .await;
        }
    }
}

fn find_response(value: Value, id: u64) -> Option<Value> {
    match value {
        Value::Array(items) => items.into_iter().find_map(|v| find_response(v, id)),
        value if value.get("id").and_then(Value::as_u64) == Some(id) => Some(value),
        _ => None,
    }
}

/// The HTTP+SSE transport of protocol 2024-11-05.
pub(crate) struct LegacySse {
    http: reqwest::Client,
    endpoint: Url,
    config: ServerConfig,
    pub(crate) pending: Arc<Pending>,
    reader: Mutex<Option<AbortOnDrop>>,
}

/// Stops the event-stream reader when its connection is dropped, or was never made.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LegacySse {
    pub(crate) async fn connect(config: &ServerConfig) -> Result<LegacySse, McpError> {
        let http = client(config)?;
        let url = url(config)?;
        let request = http
            .get(url.clone())
            .header(header::ACCEPT, "text/event-stream");
        let response = tokio::time::timeout(config.timeout, with_headers(request, config).send())
            .await
            .map_err(|_| McpError::Timeout)?
            .map_err(connection)?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        let pending = Arc::new(Pending::default());
        let (endpoint_tx, endpoint_rx) = oneshot::channel::<String>();
        let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let reader = AbortOnDrop(tokio::spawn({
            let pending = pending.clone();
            async move {
                let mut endpoint_tx = Some(endpoint_tx);
                let mut decoder = sse::Decoder::default();
                let mut stream = response.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    let Ok(events) = decoder.push(&chunk) else {
                        break;
                    };
                    for event in events {
                        if event.event == "endpoint" {
                            if let Some(tx) = endpoint_tx.take() {
                                let _ = tx.send(event.data);
                            }
                        } else if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                            && let Some(reply) = pending.deliver(message)
                        {
                            let _ = reply_tx.send(reply);
                        }
                    }
                }
                pending.close("the server closed its event stream");
            }
        }));
        let endpoint = tokio::time::timeout(config.timeout, endpoint_rx)
            .await
            .map_err(|_| McpError::Timeout)?
            .map_err(|_| {
                McpError::Protocol("the event stream ended before naming its endpoint".into())
            })?;
        let endpoint = url
            .join(endpoint.trim())
            .map_err(|err| McpError::Protocol(format!("the endpoint is not a URL: {err}")))?;
        if endpoint.origin() != url.origin() {
            return Err(McpError::Protocol(
                "the server named an endpoint on another origin".into(),
            ));
        }
        let this = LegacySse {
            http,
            endpoint,
            config: config.clone(),
            pending,
            reader: Mutex::new(Some(reader)),
        };
        let (http, endpoint, headers) = (this.http.clone(), this.endpoint.clone(), config.clone());
        tokio::spawn(async move {
            while let Some(reply) = reply_rx.recv().await {
                let request = http.post(endpoint.clone()).json(&reply);
                let _ = with_headers(request, &headers).send().await;
            }
        });
        Ok(this)
    }

    pub(crate) async fn send(&self, message: &Value) -> Result<(), McpError> {
        let request = self.http.post(self.endpoint.clone()).json(message);
        let response = with_headers(request, &self.config)
            .send()
            .await
            .map_err(connection)?;
        if !response.status().is_success() {
            return Err(refusal(response).await);
        }
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pending.close("the connection was closed");
        self.reader.lock().await.take();
    }
}
