//! Model clients over HTTP: OpenAI's Responses and Chat Completions APIs, and any server
//! that speaks them (LiteLLM, Ollama, vLLM, llama.cpp, …), behind `domain::llm::LlmClient`.
//!
//! Invariants:
//! - Transient failures (429, 5xx, connection errors) are retried with exponential backoff
//!   and jitter, honouring `Retry-After`, only before any output was streamed.
//! - Every wait is bounded: connect, first token, between tokens, whole request.
//! - Dropping a stream aborts its HTTP request at once.
//! - Keys and header values never appear in errors or logs.

mod chat;
mod outbound;
mod responses;
mod route;
mod sse;

pub use outbound::{Outbound, is_public};
pub use route::Clients;

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use domain::{
    llm::{
        ChatRequest, Completion, Embeddings, EventStream, JsonSchemaFormat, LlmClient, LlmError,
        StreamEvent, TimeoutStage, parse_structured,
    },
    models::{
        ApiStyle, Capabilities, Pricing, ProviderCredentials, ProviderKind, RemoteModel, Usage,
    },
};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Calls providers over HTTP; cheap to share.
pub struct HttpLlm {
    /// One connection pool per connect timeout (reqwest sets it per client).
    clients: Mutex<HashMap<u64, reqwest::Client>>,
}

impl Default for HttpLlm {
    fn default() -> Self {
        HttpLlm::new()
    }
}

/// The longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of an error body is read.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Inputs per embeddings call.
const EMBEDDING_BATCH: usize = 256;

/// The instruction that stands in for native structured output.
pub(crate) fn structured_instruction(instructions: &str, format: &JsonSchemaFormat) -> String {
    let schema = serde_json::to_string(&format.schema).unwrap_or_default();
    let rule = format!(
        "Answer with a single JSON object that matches this JSON Schema, and nothing else (no prose, no code fence):\n{schema}"
    );
    if instructions.is_empty() {
        rule
    } else {
        format!("{instructions}\n\n{rule}")
    }
}

/// Removes every secret of the provider from a message.
fn scrub(message: &str, provider: &ProviderCredentials) -> String {
    let mut out = message.to_string();
    let secrets = provider
        .api_key
        .iter()
        .chain(provider.extra_headers.values());
    for secret in secrets.filter(|s| s.len() >= 4) {
        out = out.replace(secret.as_str(), "[redacted]");
    }
    out
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(Duration::from_secs(20));
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        _ => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Reads a failed response into an error, with the provider's own message.
async fn error_from(mut response: Response, provider: &ProviderCredentials) -> LlmError {
    let status = response.status();
    let retry = retry_after(&response);
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).to_string();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["message"].as_str())
                .or_else(|| v["detail"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.trim().chars().take(500).collect());
    let message = scrub(
        if message.is_empty() {
            status.canonical_reason().unwrap_or("error")
        } else {
            &message
        },
        provider,
    );
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => LlmError::Unauthorized(message),
        StatusCode::NOT_FOUND => LlmError::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => LlmError::RateLimited { retry_after: retry },
        other => LlmError::Provider {
            status: other.as_u16(),
            message,
        },
    }
}

impl HttpLlm {
    pub fn new() -> HttpLlm {
        HttpLlm {
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, connect_secs: u64) -> Result<reqwest::Client, LlmError> {
        let mut clients = self.clients.lock().expect("client cache lock poisoned");
        if let Some(client) = clients.get(&connect_secs) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(connect_secs))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                LlmError::Misconfigured(format!("could not build an HTTP client: {err}"))
            })?;
        clients.insert(connect_secs, client.clone());
        Ok(client)
    }

    fn request(
        &self,
        provider: &ProviderCredentials,
        method: Method,
        path: &str,
    ) -> Result<RequestBuilder, LlmError> {
        let p = &provider.provider;
        let url = endpoint(&p.api_base, path);
        let mut builder = self.client(p.timeouts.connect_secs)?.request(method, url);
        if let Some(key) = &provider.api_key {
            builder = if is_azure(&p.api_base) {
                builder.header("api-key", key.as_str())
            } else {
                builder.bearer_auth(key)
            };
        }
        for (name, value) in &provider.extra_headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        Ok(builder)
    }

    /// Sends, retrying transient failures; waits at most `wait` for the response headers.
    async fn send(
        &self,
        provider: &ProviderCredentials,
        build: impl Fn() -> Result<RequestBuilder, LlmError>,
        wait: Duration,
        stage: TimeoutStage,
    ) -> Result<Response, LlmError> {
        let max_retries = provider.provider.max_retries;
        let mut attempt = 0;
        loop {
            let error = match tokio::time::timeout(wait, build()?.send()).await {
                Err(_) => return Err(LlmError::Timeout(stage)),
                Ok(Err(err)) if err.is_timeout() => {
                    return Err(LlmError::Timeout(TimeoutStage::Connect));
                }
                Ok(Err(err)) if err.is_builder() => {
                    return Err(LlmError::Misconfigured(scrub(
                        &error_chain(&err.without_url()),
                        provider,
                    )));
                }
                Ok(Err(err)) => {
                    LlmError::Connection(scrub(&error_chain(&err.without_url()), provider))
                }
                Ok(Ok(response)) if response.status().is_success() => return Ok(response),
                // Reading the error body is bounded too: a provider may stall after the head.
                Ok(Ok(response)) => tokio::time::timeout(wait, error_from(response, provider))
                    .await
                    .unwrap_or(LlmError::Timeout(stage)),
            };
            if !error.is_retryable() || attempt >= max_retries {
                return Err(error);
            }
            let delay = match &error {
                LlmError::RateLimited {
                    retry_after: Some(after),
                } => *after,
                _ => backoff(attempt),
            };
            tracing::warn!(provider = %provider.provider.label, attempt = attempt + 1, delay_ms = delay.as_millis() as u64, error = %error, "retrying a model call");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn json(
        &self,
        provider: &ProviderCredentials,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, LlmError> {
        let wait = Duration::from_secs(provider.provider.timeouts.request_secs);
        let response = self
            .send(
                provider,
                || {
                    let builder = self.request(provider, method.clone(), path)?;
                    Ok(match &body {
                        Some(body) => builder.json(body),
                        None => builder,
                    })
                },
                wait,
                TimeoutStage::Request,
            )
            .await?;
        let bytes = tokio::time::timeout(wait, response.bytes())
            .await
            .map_err(|_| LlmError::Timeout(TimeoutStage::Request))?
            .map_err(|err| {
                LlmError::Connection(scrub(&error_chain(&err.without_url()), provider))
            })?;
        serde_json::from_slice(&bytes)
            .map_err(|err| LlmError::MalformedStream(format!("the response is not JSON ({err})")))
    }

    async fn open_stream(
        &self,
        provider: &ProviderCredentials,
        request: &ChatRequest,
    ) -> Result<Response, LlmError> {
        let p = &provider.provider;
        let (path, body) = match p.api_style {
            ApiStyle::Responses => ("responses", responses::body(request)),
            ApiStyle::ChatCompletions => ("chat/completions", chat::body(request, p.kind)),
        };
        let wait = Duration::from_secs(p.timeouts.first_token_secs);
        self.send(
            provider,
            || Ok(self.request(provider, Method::POST, path)?.json(&body)),
            wait,
            TimeoutStage::FirstToken,
        )
        .await
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The decoder of one API style.
enum Decoder {
    Chat(chat::Decoder),
    Responses(responses::Decoder),
}

impl Decoder {
    fn event(&mut self, data: &str) -> Result<(Vec<StreamEvent>, bool), LlmError> {
        match self {
            Decoder::Chat(d) => d.event(data),
            Decoder::Responses(d) => d.event(data),
        }
    }

    fn finished(&self) -> bool {
        match self {
            Decoder::Chat(d) => d.finished(),
            Decoder::Responses(d) => d.finished(),
        }
    }

    fn into_completion(self) -> Completion {
        match self {
            Decoder::Chat(d) => d.into_completion(),
            Decoder::Responses(d) => d.into_completion(),
        }
    }
}

/// Reads the response, sending events until the end, an error, or the receiver's drop.
async fn pump(
    response: Response,
    mut decoder: Decoder,
    format: Option<JsonSchemaFormat>,
    timeouts: (Duration, Duration),
    provider: ProviderCredentials,
    tx: mpsc::Sender<Result<StreamEvent, LlmError>>,
) {
    let mut body = response.bytes_stream();
    let mut sse = sse::SseDecoder::default();
    let mut first = true;
    let result: Result<Completion, LlmError> = 'read: loop {
        let wait = if first { timeouts.0 } else { timeouts.1 };
        let next = tokio::select! {
            // The caller dropped the stream: stop and drop the response, aborting the request.
            () = tx.closed() => return,
            next = tokio::time::timeout(wait, body.next()) => next,
        };
        let chunk = match next {
            Err(_) => {
                break Err(LlmError::Timeout(if first {
                    TimeoutStage::FirstToken
                } else {
                    TimeoutStage::Idle
                }));
            }
            Ok(None) => {
                if let Some(data) = sse.finish() {
                    match decoder.event(&data) {
                        Ok((events, _)) => {
                            for event in events {
                                if tx.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(err) => break Err(err),
                    }
                }
                if decoder.finished() {
                    break Ok(decoder.into_completion());
                }
                break Err(LlmError::MalformedStream(
                    "the stream ended before the response was complete".into(),
                ));
            }
            Ok(Some(Err(err))) => {
                break Err(LlmError::MalformedStream(scrub(
                    &format!(
                        "the connection broke mid-stream: {}",
                        error_chain(&err.without_url())
                    ),
                    &provider,
                )));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        first = false;
        let payloads = match sse.push(&chunk) {
            Ok(payloads) => payloads,
            Err(message) => break Err(LlmError::MalformedStream(message)),
        };
        for data in payloads {
            match decoder.event(&data) {
                Ok((events, done)) => {
                    for event in events {
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    if done {
                        break 'read Ok(decoder.into_completion());
                    }
                }
                Err(err) => break 'read Err(stream_failure(err, &provider)),
            }
        }
    };
    let result = result.and_then(|mut completion| {
        // An answer that calls tools is not the final answer yet: nothing to parse.
        if let Some(format) = format.as_ref().filter(|_| completion.tool_calls.is_empty()) {
            completion.parsed = Some(parse_structured(&completion.text, format)?);
        }
        Ok(completion)
    });
    let _ = tx.send(result.map(StreamEvent::Completed)).await;
}

/// A failure met while decoding a stream: the provider's own mid-stream error as it is,
/// a decoding problem as a malformed stream; secrets scrubbed from both.
fn stream_failure(err: LlmError, provider: &ProviderCredentials) -> LlmError {
    match err {
        LlmError::Provider { status, message } => LlmError::Provider {
            status,
            message: scrub(&message, provider),
        },
        LlmError::MalformedStream(message) => LlmError::MalformedStream(scrub(&message, provider)),
        other => LlmError::MalformedStream(scrub(&other.to_string(), provider)),
    }
}

fn is_stale_previous_response(error: &LlmError) -> bool {
    match error {
        LlmError::NotFound(message) | LlmError::Provider { message, .. } => {
            message.contains("previous_response") || message.contains("Previous response")
        }
        _ => false,
    }
}

#[async_trait]
impl LlmClient for HttpLlm {
    async fn stream(
        &self,
        provider: &ProviderCredentials,
        request: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        let response = match self.open_stream(provider, request).await {
            // The provider forgot the chained response: send the whole history instead.
            Err(error)
                if request.previous_response_id.is_some() && is_stale_previous_response(&error) =>
            {
                tracing::info!(provider = %provider.provider.label, "previous response is gone; resending the full history");
                let full = ChatRequest {
                    previous_response_id: None,
                    ..request.clone()
                };
                self.open_stream(provider, &full).await?
            }
            other => other?,
        };
        let decoder = match provider.provider.api_style {
            ApiStyle::Responses => Decoder::Responses(responses::Decoder::default()),
            ApiStyle::ChatCompletions => Decoder::Chat(chat::Decoder::default()),
        };
        let t = provider.provider.timeouts;
        let timeouts = (
            Duration::from_secs(t.first_token_secs),
            Duration::from_secs(t.idle_secs),
        );
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(pump(
            response,
            decoder,
            request.response_format.clone(),
            timeouts,
            provider.clone(),
            tx,
        ));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }

    async fn list_models(
        &self,
        provider: &ProviderCredentials,
    ) -> Result<Vec<RemoteModel>, LlmError> {
        if provider.provider.kind == ProviderKind::LiteLlm {
            // LiteLLM's model info carries limits and prices; fall back to the plain list.
            match self.json(provider, Method::GET, "model/info", None).await {
                Ok(info) => return Ok(litellm_models(&info)),
                Err(LlmError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let list = self.json(provider, Method::GET, "models", None).await?;
        let data = list["data"]
            .as_array()
            .ok_or_else(|| LlmError::MalformedStream("the model list has no `data`".into()))?;
        Ok(data
            .iter()
            .filter_map(|m| m["id"].as_str())
            .map(|id| RemoteModel {
                name: id.to_string(),
                ..RemoteModel::default()
            })
            .collect())
    }

    async fn embed(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        inputs: &[String],
        dimensions: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        let mut out = Embeddings::default();
        for batch in inputs.chunks(EMBEDDING_BATCH) {
            let mut body = json!({"model": model, "input": batch, "encoding_format": "float"});
            if let Some(dimensions) = dimensions {
                body["dimensions"] = json!(dimensions);
            }
            let response = self
                .json(provider, Method::POST, "embeddings", Some(body))
                .await?;
            let mut data: Vec<&Value> = response["data"]
                .as_array()
                .map(|d| d.iter().collect())
                .unwrap_or_default();
            if data.len() != batch.len() {
                return Err(LlmError::MalformedStream(format!(
                    "asked for {} embeddings, got {}",
                    batch.len(),
                    data.len()
                )));
            }
            data.sort_by_key(|d| d["index"].as_u64().unwrap_or(0));
            for item in data {
                let vector: Option<Vec<f32>> = item["embedding"].as_array().map(|v| {
                    v.iter()
                        .filter_map(Value::as_f64)
                        .map(|f| f as f32)
                        .collect()
                });
                out.vectors.push(vector.ok_or_else(|| {
                    LlmError::MalformedStream("an embedding is not a list of numbers".into())
                })?);
            }
            out.usage.add(Usage {
                input_tokens: response["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                ..Usage::default()
            });
        }
        Ok(out)
    }

    async fn transcribe(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        audio: Vec<u8>,
        filename: &str,
        language: Option<&str>,
    ) -> Result<String, LlmError> {
        let wait = Duration::from_secs(provider.provider.timeouts.request_secs);
        let response = self
            .send(
                provider,
                || {
                    let file = reqwest::multipart::Part::bytes(audio.clone())
                        .file_name(filename.to_string());
                    let mut form = reqwest::multipart::Form::new()
                        .text("model", model.to_string())
                        .part("file", file);
                    if let Some(language) = language {
                        form = form.text("language", language.to_string());
                    }
                    Ok(self
                        .request(provider, Method::POST, "audio/transcriptions")?
                        .multipart(form))
                },
                wait,
                TimeoutStage::Request,
            )
            .await?;
        let body: Value = tokio::time::timeout(wait, response.json())
            .await
            .map_err(|_| LlmError::Timeout(TimeoutStage::Request))?
            .map_err(|err| {
                LlmError::MalformedStream(format!("the transcription is not JSON ({err})"))
            })?;
        body["text"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LlmError::MalformedStream("the transcription has no `text`".into()))
    }
}

/// Models from LiteLLM's `/model/info`, with per-token prices turned per million.
fn litellm_models(info: &Value) -> Vec<RemoteModel> {
    let per_mtok = |v: &Value| v.as_f64().map(|p| (p * 1_000_000.0 * 1e6).round() / 1e6);
    info["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry["model_name"].as_str()?.to_string();
            let mi = &entry["model_info"];
            let flag = |key: &str| mi[key].as_bool().unwrap_or(false);
            Some(RemoteModel {
                name,
                context_window: mi["max_input_tokens"]
                    .as_i64()
                    .or_else(|| mi["max_tokens"].as_i64()),
                max_output_tokens: mi["max_output_tokens"].as_i64(),
                pricing: Pricing {
                    input_per_mtok: per_mtok(&mi["input_cost_per_token"]),
                    output_per_mtok: per_mtok(&mi["output_cost_per_token"]),
                    cached_input_per_mtok: per_mtok(&mi["cache_read_input_token_cost"]),
                },
                capabilities: mi.is_object().then(|| Capabilities {
                    reasoning: flag("supports_reasoning"),
                    vision: flag("supports_vision"),
                    tools: mi["supports_function_calling"].as_bool().unwrap_or(true),
                    structured_output: mi["supports_response_schema"].as_bool().unwrap_or(true),
                    audio: flag("supports_audio_input"),
                }),
            })
        })
        .collect()
}

/// The URL of an API path under a base URL. A query string in the base stays at the end,
/// which is how Azure OpenAI deployments are reached:
/// `https://res.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21`.
fn endpoint(api_base: &str, path: &str) -> String {
    let (base, query) = match api_base.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (api_base, None),
    };
    let mut url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(query);
    }
    url
}

/// Azure OpenAI takes its API keys in an `api-key` header rather than as a bearer token.
fn is_azure(api_base: &str) -> bool {
    let host = api_base
        .split("://")
        .nth(1)
        .unwrap_or(api_base)
        .split(['/', '?', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    host.ends_with(".openai.azure.com") || host.ends_with(".services.ai.azure.com")
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn paths_join_bases_and_keep_their_queries() {
        assert_eq!(
            endpoint("https://api.openai.com/v1/", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoint(
                "https://res.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21",
                "chat/completions"
            ),
            "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            endpoint("http://h/v1?a=1", "models?limit=5"),
            "http://h/v1/models?limit=5&a=1"
        );
        assert!(is_azure("https://res.openai.azure.com/openai/v1"));
        assert!(!is_azure("https://api.openai.com/v1"));
        assert!(!is_azure("http://azure.com.evil.example/v1"));
    }
}
