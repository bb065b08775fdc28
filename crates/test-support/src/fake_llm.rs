//! A fake OpenAI-compatible server on loopback: Chat Completions and Responses (streamed),
//! models (plus LiteLLM's model info), embeddings and transcription. Tests script its
//! replies and read its request log; faults are injected by the script.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the fake answers to the next generation request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streams this text in small pieces.
    Text(String),
    /// Streams a reasoning summary, then the reply.
    Reasoning(String, Box<Reply>),
    /// Streams function calls: (name, JSON arguments).
    ToolCalls(Vec<(String, String)>),
    /// An error status with a message, and optionally a `Retry-After`.
    Status {
        status: u16,
        message: String,
        retry_after: Option<String>,
    },
    /// Waits before the first byte of the response.
    Slow(Duration, Box<Reply>),
    /// Streams `text` but breaks the connection after `chunks` pieces.
    Cut { text: String, chunks: usize },
    /// Streams `chunks` pieces of `text`, then nothing, until the client goes away.
    Stall { text: String, chunks: usize },
    /// A chunk that is not JSON.
    Malformed,
    /// Sends the response head, then nothing, until the client goes away.
    Hang,
    /// The Responses API's answer to a `previous_response_id` it does not know.
    StalePreviousResponse,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    log: Mutex<Vec<Logged>>,
    api_key: Option<String>,
    disconnects: AtomicUsize,
    responses: AtomicUsize,
    embedding_failures: AtomicUsize,
}

/// A running fake; stops when dropped.
pub struct FakeLlm {
    /// `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    /// A fake that accepts any key (or none).
    pub async fn start() -> FakeLlm {
        FakeLlm::start_with(None).await
    }

    /// A fake that answers 401 unless `Authorization: Bearer <key>` is sent.
    pub async fn with_key(key: &str) -> FakeLlm {
        FakeLlm::start_with(Some(key.to_string())).await
    }

    async fn start_with(api_key: Option<String>) -> FakeLlm {
        let shared = Arc::new(Shared {
            api_key,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/responses", post(responses))
            .route("/v1/models", get(models))
            .route("/v1/model/info", get(model_info))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/audio/transcriptions", post(transcription))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm {
            base_url: format!("http://{addr}/v1"),
            shared,
            task,
        }
    }

    /// Queues replies, answered in order; with none queued the fake says hello.
    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().expect("lock").push_back(reply);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("lock").clone()
    }

    /// The next `n` embeddings requests fail with a 500.
    pub fn fail_embeddings(&self, n: usize) {
        self.shared.embedding_failures.store(n, Ordering::SeqCst);
    }

    /// How many streams the client abandoned before they ended.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match &shared.api_key {
        Some(key) if given.as_deref() != Some(&format!("Bearer {key}")) => {
            let shown = given
                .as_deref()
                .and_then(|g| g.strip_prefix("Bearer "))
                .unwrap_or("");
            Err(Box::new(
                (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": format!("Incorrect API key provided: {shown}."), "type": "invalid_request_error", "code": "invalid_api_key"}})),
            )
                .into_response(),
            ))
        }
        _ => Ok(given),
    }
}

fn log(shared: &Shared, path: &str, body: &Value, authorization: Option<String>) {
    shared.log.lock().expect("lock").push(Logged {
        path: path.into(),
        body: body.clone(),
        authorization,
        at: Instant::now(),
    });
}

fn next_reply(shared: &Shared) -> Reply {
    shared
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(Reply::Text("Hello from the fake model.".into()))
}

/// Splits text into pieces of a few characters, as a model streams tokens.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

fn input_words(body: &Value) -> u64 {
    body.to_string().split_whitespace().count() as u64
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Chat,
    Responses,
}

/// One frame of a streamed reply.
enum Frame {
    Data(Value),
    Raw(String),
    /// Break the connection.
    Abort,
    /// Keep the connection open, sending nothing, until the client leaves.
    Hang,
}

fn frames(style: Style, reply: Reply, body: &Value, response_id: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut output_tokens = 0u64;
    if style == Style::Responses {
        out.push(Frame::Data(
            json!({"type": "response.created", "response": {"id": response_id}}),
        ));
    }
    let mut finish = "stop";
    let mut reply = reply;
    if let Reply::Reasoning(summary, then) = reply {
        for piece in pieces(&summary) {
            out.push(Frame::Data(match style {
                Style::Chat => json!({"choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": null}]}),
                Style::Responses => json!({"type": "response.reasoning_summary_text.delta", "delta": piece, "output_index": 0}),
            }));
        }
        reply = *then;
    }
    match reply {
        Reply::Text(text) => {
            for piece in pieces(&text) {
                output_tokens += 1;
                out.push(Frame::Data(match style {
                    Style::Chat => json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
                    Style::Responses => json!({"type": "response.output_text.delta", "delta": piece, "output_index": 0}),
                }));
            }
        }
        Reply::ToolCalls(calls) => {
            finish = "tool_calls";
            for (index, (name, arguments)) in calls.iter().enumerate() {
                let id = format!("call_{index}");
                out.push(Frame::Data(match style {
                    Style::Chat => json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}, "finish_reason": null}]}),
                    Style::Responses => json!({"type": "response.output_item.added", "output_index": index, "item": {"type": "function_call", "call_id": id, "name": name, "arguments": ""}}),
                }));
                for piece in pieces(arguments) {
                    output_tokens += 1;
                    out.push(Frame::Data(match style {
                        Style::Chat => json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, "finish_reason": null}]}),
                        Style::Responses => json!({"type": "response.function_call_arguments.delta", "output_index": index, "delta": piece}),
                    }));
                }
            }
        }
        Reply::Cut { ref text, chunks } | Reply::Stall { ref text, chunks } => {
            let stall = matches!(reply, Reply::Stall { .. });
            for piece in pieces(text).into_iter().take(chunks) {
                out.push(Frame::Data(match style {
                    Style::Chat => json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
                    Style::Responses => json!({"type": "response.output_text.delta", "delta": piece, "output_index": 0}),
                }));
            }
            out.push(if stall { Frame::Hang } else { Frame::Abort });
            return out;
        }
        Reply::Malformed => {
            out.push(Frame::Raw("data: {\"choices\": [oops\n\n".into()));
            return out;
        }
        Reply::Hang => {
            out.push(Frame::Hang);
            return out;
        }
        // Handled before streaming starts.
        Reply::Status { .. }
        | Reply::Slow(..)
        | Reply::StalePreviousResponse
        | Reply::Reasoning(..) => {}
    }
    let input_tokens = input_words(body);
    match style {
        Style::Chat => {
            out.push(Frame::Data(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            ));
            out.push(Frame::Data(json!({"choices": [], "usage": {
                "prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                "prompt_tokens_details": {"cached_tokens": input_tokens / 2},
                "completion_tokens_details": {"reasoning_tokens": 0}}})));
            out.push(Frame::Raw("data: [DONE]\n\n".into()));
        }
        Style::Responses => out.push(Frame::Data(
            json!({"type": "response.completed", "response": {
            "id": response_id,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "input_tokens_details": {"cached_tokens": input_tokens / 2},
                      "output_tokens_details": {"reasoning_tokens": 0}}}}),
        )),
    }
    out
}

async fn generate(
    shared: Arc<Shared>,
    style: Style,
    path: &str,
    headers: HeaderMap,
    body: Value,
) -> Response {
    let authorization = match authorized(&shared, &headers) {
        Ok(authorization) => authorization,
        Err(response) => return *response,
    };
    log(&shared, path, &body, authorization);
    let mut reply = next_reply(&shared);
    while let Reply::Slow(delay, then) = reply {
        tokio::time::sleep(delay).await;
        reply = *then;
    }
    match reply {
        Reply::Status {
            status,
            message,
            retry_after,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(json!({"error": {"message": message}})),
            )
                .into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, after.parse().expect("a header value"));
            }
            return response;
        }
        Reply::StalePreviousResponse => {
            let id = body["previous_response_id"].as_str().unwrap_or_default();
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": format!("Previous response with id '{id}' not found."), "code": "previous_response_not_found"}})),
            )
                .into_response();
        }
        _ => {}
    }
    let n = shared.responses.fetch_add(1, Ordering::SeqCst);
    let frames = frames(style, reply, &body, &format!("resp_{n}"));
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let watcher = shared.clone();
    tokio::spawn(async move {
        for frame in frames {
            let bytes = match frame {
                Frame::Data(value) => Bytes::from(format!("data: {value}\n\n")),
                Frame::Raw(text) => Bytes::from(text),
                Frame::Abort => {
                    // Let the client read what was sent before the connection breaks.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(Err(std::io::Error::other("cut"))).await;
                    return;
                }
                Frame::Hang => {
                    tx.closed().await;
                    watcher.disconnects.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            if tx.send(Ok(bytes)).await.is_err() {
                watcher.disconnects.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("a valid response")
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    generate(shared, Style::Chat, "/v1/chat/completions", headers, body).await
}

async fn responses(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    generate(shared, Style::Responses, "/v1/responses", headers, body).await
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorized(&shared, &headers) {
        Err(response) => *response,
        Ok(authorization) => {
            log(&shared, "/v1/models", &Value::Null, authorization);
            Json(json!({"object": "list", "data": [{"id": "fake-gpt", "object": "model"}, {"id": "fake-embed", "object": "model"}]})).into_response()
        }
    }
}

async fn model_info(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorized(&shared, &headers) {
        Err(response) => *response,
        Ok(authorization) => {
            log(&shared, "/v1/model/info", &Value::Null, authorization);
            Json(json!({"data": [
                {"model_name": "fake-gpt", "model_info": {"max_input_tokens": 128000, "max_output_tokens": 16384,
                    "input_cost_per_token": 0.0000025, "output_cost_per_token": 0.00001, "cache_read_input_token_cost": 0.00000125,
                    "supports_vision": true, "supports_function_calling": true, "supports_response_schema": true}},
                {"model_name": "fake-small", "model_info": {"max_tokens": 8192, "input_cost_per_token": 0.0000001, "output_cost_per_token": 0.0000004}}
            ]}))
            .into_response()
        }
    }
}

/// A deterministic vector per text that behaves like a (crude) semantic embedding: each
/// word adds a signed unit to a dimension picked by its hash, so texts that share words
/// point the same way and unrelated texts are nearly orthogonal. Clients normalise.
fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut out = vec![0.0f32; dimensions];
    let hash = |word: &str, salt: u8| {
        let mut state: u64 = 1469598103934665603;
        for byte in word.bytes().chain([salt]) {
            state = (state ^ u64::from(byte)).wrapping_mul(1099511628211);
        }
        state
    };
    let mut words = 0;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        let h = hash(&word, 0);
        let sign = if hash(&word, 1) & 1 == 0 { 1.0 } else { -1.0 };
        out[(h % dimensions as u64) as usize] += sign;
        words += 1;
    }
    if words == 0 {
        // No words: still a fixed, non-zero vector.
        out[0] = 1.0;
    }
    out
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let authorization = match authorized(&shared, &headers) {
        Ok(authorization) => authorization,
        Err(response) => return *response,
    };
    log(&shared, "/v1/embeddings", &body, authorization);
    let failing = shared
        .embedding_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "the embedding backend is down", "type": "server_error"}})),
        )
            .into_response();
    }
    // 64 dimensions unless asked: enough for word overlap to dominate hash collisions.
    let dimensions = body["dimensions"].as_u64().unwrap_or(64) as usize;
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    // Answer in reverse order: clients must sort by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": vector(text, dimensions)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({"object": "list", "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})).into_response()
}

async fn transcription(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = match authorized(&shared, &headers) {
        Ok(authorization) => authorization,
        Err(response) => return *response,
    };
    let multipart = String::from_utf8_lossy(&body).to_string();
    log(
        &shared,
        "/v1/audio/transcriptions",
        &json!({"multipart": multipart}),
        authorization,
    );
    Json(json!({"text": format!("transcribed {} bytes", body.len())})).into_response()
}
