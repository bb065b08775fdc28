//! The model client interface: one trait the engine, titles and knowledge bases call,
//! implemented over HTTP by the `providers` crate.
//!
//! A call streams [`StreamEvent`]s and ends with one [`StreamEvent::Completed`]. Dropping
//! the stream cancels the call and aborts its HTTP request.

use std::{pin::Pin, time::Duration};

use async_trait::async_trait;
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    error::{DomainError, ErrorKind},
    models::{ProviderCredentials, RemoteModel, Usage},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, answering `tool_call_id`.
    Tool,
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum ContentPart {
    Text(String),
    /// An image by URL or `data:` URL.
    Image {
        url: String,
        detail: Option<String>,
    },
    /// A file by `data:` URL, where the API accepts files.
    File {
        filename: String,
        data_url: String,
    },
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// On assistant messages: the calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On tool messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn tool_result(call_id: impl Into<String>, output: impl Into<String>) -> Message {
        Message {
            role: Role::Tool,
            content: vec![ContentPart::Text(output.into())],
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }

    /// The text parts, joined.
    pub fn joined_text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    pub strict: bool,
}

/// Output constrained to a JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub schema: Value,
    pub strict: bool,
}

/// One generation request, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub model: String,
    /// System instructions.
    pub instructions: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<JsonSchemaFormat>,
    /// Whether the provider enforces JSON Schemas; if not, the schema is given as an
    /// instruction and the answer validated.
    pub native_structured_output: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    /// `minimal`, `low`, `medium` or `high`.
    pub reasoning_effort: Option<String>,
    /// `low`, `medium` or `high`.
    pub verbosity: Option<String>,
    /// Responses API: continue from this response instead of resending history. When the
    /// provider no longer knows it, the call is retried with the full `messages`.
    pub previous_response_id: Option<String>,
}

/// What a call streams.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    /// A reasoning summary, as the model writes it.
    ReasoningDelta(String),
    ToolCallStarted {
        index: usize,
        id: String,
        name: String,
    },
    ToolCallArgumentsDelta {
        index: usize,
        delta: String,
    },
    /// The last event of every successful call.
    Completed(Completion),
}

/// The whole result of a call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// Responses API: the id to chain the next call from.
    pub response_id: Option<String>,
    pub finish_reason: Option<String>,
    /// With a JSON Schema response format: the parsed and validated answer.
    pub parsed: Option<Value>,
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutStage {
    Connect,
    FirstToken,
    Idle,
    Request,
}

impl TimeoutStage {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutStage::Connect => "connecting",
            TimeoutStage::FirstToken => "waiting for the first token",
            TimeoutStage::Idle => "waiting for the next token",
            TimeoutStage::Request => "waiting for the response",
        }
    }
}

/// Why a call failed, in words a workflow author understands. Secrets are scrubbed from
/// every message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the provider refused the API key: {0}")]
    Unauthorized(String),
    #[error("the provider does not know this model or endpoint: {0}")]
    NotFound(String),
    #[error("the provider is rate limiting requests{}", .retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider did not answer in time ({})", .0.as_str())]
    Timeout(TimeoutStage),
    #[error("the provider answered {status}: {message}")]
    Provider { status: u16, message: String },
    #[error("could not reach the provider: {0}")]
    Connection(String),
    #[error("the provider's stream was malformed or cut: {0}")]
    MalformedStream(String),
    #[error("the model's answer does not match the requested format: {0}")]
    InvalidOutput(String),
    #[error("the provider is misconfigured: {0}")]
    Misconfigured(String),
    /// The run was cancelled while the call streamed; the stream was dropped.
    #[error("the run was cancelled")]
    Cancelled,
}

impl LlmError {
    /// Whether a fresh attempt may succeed (and no output was shown yet).
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Connection(_) => true,
            LlmError::Provider { status, .. } => matches!(status, 500 | 502 | 503 | 504 | 529),
            _ => false,
        }
    }
}

impl DomainError for LlmError {
    fn kind(&self) -> ErrorKind {
        match self {
            LlmError::Misconfigured(_) | LlmError::InvalidOutput(_) => ErrorKind::Invalid,
            LlmError::Cancelled => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            LlmError::Unauthorized(_) => "provider_unauthorized",
            LlmError::NotFound(_) => "provider_not_found",
            LlmError::RateLimited { .. } => "provider_rate_limited",
            LlmError::Timeout(_) => "provider_timeout",
            LlmError::Provider { .. } => "provider_error",
            LlmError::Connection(_) => "provider_unreachable",
            LlmError::MalformedStream(_) => "provider_malformed_stream",
            LlmError::InvalidOutput(_) => "invalid_model_output",
            LlmError::Misconfigured(_) => "provider_misconfigured",
            LlmError::Cancelled => "cancelled",
        }
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// Vectors for a batch of texts, in input order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
}

/// Calls models. Implementations retry transient failures before any output was streamed,
/// and never after.
#[async_trait]
pub trait LlmClient: Send + Sync {
    async fn stream(
        &self,
        provider: &ProviderCredentials,
        request: &ChatRequest,
    ) -> Result<EventStream, LlmError>;
    /// The models the provider offers.
    async fn list_models(
        &self,
        provider: &ProviderCredentials,
    ) -> Result<Vec<RemoteModel>, LlmError>;
    async fn embed(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        inputs: &[String],
        dimensions: Option<u32>,
    ) -> Result<Embeddings, LlmError>;
    /// Speech to text (`/audio/transcriptions`).
    async fn transcribe(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        audio: Vec<u8>,
        filename: &str,
        language: Option<&str>,
    ) -> Result<String, LlmError>;
}

/// Runs a call to the end and returns its completion, validating structured output.
pub async fn complete(
    client: &dyn LlmClient,
    provider: &ProviderCredentials,
    request: &ChatRequest,
) -> Result<Completion, LlmError> {
    use std::future::poll_fn;
    let mut stream = client.stream(provider, request).await?;
    let mut completion = None;
    while let Some(event) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        if let StreamEvent::Completed(done) = event? {
            completion = Some(done);
        }
    }
    completion.ok_or_else(|| {
        LlmError::MalformedStream("the stream ended without a final response".into())
    })
}

/// Parses and validates a structured answer against its schema.
pub fn parse_structured(text: &str, format: &JsonSchemaFormat) -> Result<Value, LlmError> {
    let trimmed = text.trim();
    // Models without native structured output sometimes fence their JSON.
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .map(str::trim)
        .unwrap_or(trimmed);
    let value: Value = serde_json::from_str(unfenced)
        .map_err(|err| LlmError::InvalidOutput(format!("not JSON: {err}")))?;
    let validator = jsonschema::validator_for(&format.schema)
        .map_err(|err| LlmError::Misconfigured(format!("invalid output schema: {err}")))?;
    if let Some(error) = validator.iter_errors(&value).next() {
        return Err(LlmError::InvalidOutput(format!(
            "{error} at `{}`",
            error.instance_path()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn structured_answers_are_validated() {
        let format = JsonSchemaFormat {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
            strict: true,
        };
        assert_eq!(
            parse_structured(r#"{"n": 3}"#, &format).unwrap(),
            json!({"n": 3})
        );
        assert_eq!(
            parse_structured("```json\n{\"n\": 4}\n```", &format).unwrap(),
            json!({"n": 4})
        );
        assert!(matches!(
            parse_structured(r#"{"n": "x"}"#, &format),
            Err(LlmError::InvalidOutput(_))
        ));
        assert!(matches!(
            parse_structured("hello", &format),
            Err(LlmError::InvalidOutput(_))
        ));
    }

    #[test]
    fn retryable_errors() {
        assert!(LlmError::RateLimited { retry_after: None }.is_retryable());
        assert!(
            LlmError::Provider {
                status: 503,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(
            !LlmError::Provider {
                status: 400,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(!LlmError::Unauthorized(String::new()).is_retryable());
        assert!(!LlmError::Timeout(TimeoutStage::Idle).is_retryable());
    }
}
