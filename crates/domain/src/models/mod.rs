//! Model providers and the model registry: where models are served from, with what
//! credentials, and what each model can do and costs.
//!
//! Invariants:
//! - Provider API keys and extra header values are stored encrypted; only a hint of the key
//!   and the header names ever leave this module.
//! - At most one default provider, one default model and one default title model (partial
//!   unique indexes).

mod service;
pub mod titles;
pub mod usage;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use service::*;

use crate::{
    auth::AuthError,
    error::{DomainError, ErrorKind},
    store::StoreError,
};

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI itself: the Responses API by default, Chat Completions on request.
    OpenAi,
    /// Any server speaking OpenAI's Chat Completions (Ollama, vLLM, llama.cpp, Groq, …).
    OpenAiCompatible,
    /// A LiteLLM proxy: Chat Completions, plus its model list with prices.
    LiteLlm,
    /// Embedding models run inside the server from its models folder (`models.local_dir`).
    Local,
}

impl ProviderKind {
    pub const ALL: &'static [ProviderKind] = &[
        ProviderKind::OpenAi,
        ProviderKind::OpenAiCompatible,
        ProviderKind::LiteLlm,
        ProviderKind::Local,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::LiteLlm => "litellm",
            ProviderKind::Local => "local",
        }
    }

    pub fn parse(text: &str) -> Option<ProviderKind> {
        ProviderKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == text)
    }

    /// The API style used when none is chosen.
    pub fn default_style(self) -> ApiStyle {
        match self {
            ProviderKind::OpenAi => ApiStyle::Responses,
            ProviderKind::OpenAiCompatible | ProviderKind::LiteLlm | ProviderKind::Local => {
                ApiStyle::ChatCompletions
            }
        }
    }
}

/// OpenAI's two generation APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiStyle {
    Responses,
    ChatCompletions,
}

impl ApiStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiStyle::Responses => "responses",
            ApiStyle::ChatCompletions => "chat_completions",
        }
    }

    pub fn parse(text: &str) -> Option<ApiStyle> {
        match text {
            "responses" => Some(ApiStyle::Responses),
            "chat_completions" => Some(ApiStyle::ChatCompletions),
            _ => None,
        }
    }
}

/// Time limits of calls to a provider, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect_secs: u64,
    /// Until the first streamed event arrives.
    pub first_token_secs: u64,
    /// Between two streamed events.
    pub idle_secs: u64,
    /// The whole call, for calls that do not stream.
    pub request_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_secs: 10,
            first_token_secs: 60,
            idle_secs: 60,
            request_secs: 120,
        }
    }
}

/// A provider as stored: secrets encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: i64,
    pub kind: ProviderKind,
    pub label: String,
    /// Base URL, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub api_base: String,
    pub api_style: ApiStyle,
    pub api_key_encrypted: Option<String>,
    pub api_key_hint: Option<String>,
    /// A JSON object of header names to values, encrypted as a whole.
    pub extra_headers_encrypted: Option<String>,
    pub extra_header_names: Vec<String>,
    pub timeouts: Timeouts,
    /// Retries after a 429, a 5xx or a connection error, before any output was streamed.
    pub max_retries: u32,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A provider with its secrets decrypted, for the client only. Never logged.
#[derive(Clone)]
pub struct ProviderCredentials {
    pub provider: Provider,
    pub api_key: Option<String>,
    pub extra_headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for ProviderCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredentials")
            .field("provider", &self.provider.label)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field(
                "extra_headers",
                &self.extra_headers.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub reasoning: bool,
    pub vision: bool,
    pub tools: bool,
    pub structured_output: bool,
    pub audio: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            reasoning: false,
            vision: false,
            tools: true,
            structured_output: true,
            audio: false,
        }
    }
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pricing {
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    pub cached_input_per_mtok: Option<f64>,
}

/// A model in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: i64,
    pub provider_id: i64,
    /// The id sent to the provider (`gpt-5-mini`, `llama3.1:8b`).
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub capabilities: Capabilities,
    pub context_window: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub pricing: Pricing,
    pub enabled: bool,
    pub is_default: bool,
    pub is_default_title: bool,
    pub origin: ModelOrigin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a model of the registry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOrigin {
    /// An administrator added it.
    Added,
    /// Imported from its provider's model list.
    Imported,
    /// An agent named it and the open registry sent it to the default provider; it has
    /// no prices until an administrator gives it some.
    Seen,
}

impl ModelOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelOrigin::Added => "added",
            ModelOrigin::Imported => "imported",
            ModelOrigin::Seen => "seen",
        }
    }

    pub fn parse(text: &str) -> Option<ModelOrigin> {
        [ModelOrigin::Added, ModelOrigin::Imported, ModelOrigin::Seen]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// Whether agents may name models the registry does not know (`[models] registry`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryMode {
    /// Unknown names go to the default provider and are listed as seen.
    #[default]
    Open,
    /// Only the registry's enabled models run.
    Strict,
}

/// How the registry treats what it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    pub registry: RegistryMode,
    /// The context budget of a model whose window is not known (tokens).
    pub default_context_window: i64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            registry: RegistryMode::Open,
            default_context_window: 128_000,
        }
    }
}

impl Model {
    /// How many tokens of context the model takes: its window, or the configured default.
    pub fn context_budget(&self, settings: &RegistrySettings) -> i64 {
        self.context_window
            .filter(|w| *w > 0)
            .unwrap_or(settings.default_context_window)
    }
}

/// Tokens of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `input_tokens` served from the provider's cache.
    pub cached_input_tokens: u64,
    /// Part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        // Providers report these; a bogus count must not overflow.
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
    }
}

impl Pricing {
    /// The cost of `usage` in US dollars; `None` when the model has no price. Cached input
    /// tokens are billed at the cached price (the input price when there is none).
    pub fn cost(&self, usage: Usage) -> Option<f64> {
        let input = self.input_per_mtok?;
        let output = self.output_per_mtok.unwrap_or(0.0);
        let cached_price = self.cached_input_per_mtok.unwrap_or(input);
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let dollars = (uncached as f64 * input
            + cached as f64 * cached_price
            + usage.output_tokens as f64 * output)
            / 1_000_000.0;
        Some((dollars * 1e9).round() / 1e9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model provider {0} not found")]
    ProviderNotFound(i64),
    #[error("model {0} not found")]
    ModelNotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("a stored secret of this provider cannot be decrypted; set its API key again")]
    Undecryptable,
    /// A model an agent names cannot run; the message says what to do.
    #[error("{0}")]
    Unresolved(String),
    #[error(transparent)]
    Access(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for ModelError {
    fn kind(&self) -> ErrorKind {
        match self {
            ModelError::ProviderNotFound(_)
            | ModelError::ModelNotFound(_)
            | ModelError::Unresolved(_) => ErrorKind::NotFound,
            ModelError::Invalid(_) => ErrorKind::Invalid,
            ModelError::Conflict(_) => ErrorKind::Conflict,
            ModelError::Access(err) => err.kind(),
            ModelError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            ModelError::Undecryptable | ModelError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ModelError::ProviderNotFound(_) => "provider_not_found",
            ModelError::ModelNotFound(_) | ModelError::Unresolved(_) => "model_not_found",
            ModelError::Invalid(_) => "invalid_field",
            ModelError::Conflict(_) => "conflict",
            ModelError::Undecryptable => "secret_undecryptable",
            ModelError::Access(err) => err.code(),
            ModelError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            ModelError::Store(_) => "internal_error",
        }
    }
}

pub type ModelResult<T> = Result<T, ModelError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_arithmetic() {
        let pricing = Pricing {
            input_per_mtok: Some(1.25),
            output_per_mtok: Some(10.0),
            cached_input_per_mtok: Some(0.125),
        };
        let usage = Usage {
            input_tokens: 10_000,
            output_tokens: 2_000,
            cached_input_tokens: 4_000,
            reasoning_tokens: 500,
        };
        // 6,000 × 1.25 + 4,000 × 0.125 + 2,000 × 10 = 7,500 + 500 + 20,000 micro-dollars.
        assert_eq!(pricing.cost(usage), Some(0.028));
        let no_cache_price = Pricing {
            cached_input_per_mtok: None,
            ..pricing
        };
        assert_eq!(no_cache_price.cost(usage), Some(0.0325));
        assert_eq!(Pricing::default().cost(usage), None);
        let mut total = Usage::default();
        total.add(usage);
        total.add(usage);
        assert_eq!(total.output_tokens, 4_000);
    }
}
