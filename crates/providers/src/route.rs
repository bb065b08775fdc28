//! Sends each model call to the client for its provider's kind: `local` providers to the
//! in-process models, every other kind over HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{
    llm::{ChatRequest, Embeddings, EventStream, LlmClient, LlmError},
    models::{ProviderCredentials, ProviderKind, RemoteModel},
};

use crate::HttpLlm;

/// The server's model client.
pub struct Clients {
    http: HttpLlm,
    /// `None` when this build has no local models (the `local-models` cargo feature is off).
    local: Option<Arc<dyn LlmClient>>,
}

impl Clients {
    pub fn new(http: HttpLlm, local: Option<Arc<dyn LlmClient>>) -> Clients {
        Clients { http, local }
    }

    fn pick(&self, provider: &ProviderCredentials) -> Result<&dyn LlmClient, LlmError> {
        match provider.provider.kind {
            ProviderKind::Local => self.local.as_deref().ok_or_else(|| {
                LlmError::Misconfigured(
                    "this server was built without local models (cargo feature `local-models`)"
                        .into(),
                )
            }),
            _ => Ok(&self.http),
        }
    }
}

#[async_trait]
impl LlmClient for Clients {
    async fn stream(
        &self,
        provider: &ProviderCredentials,
        request: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        self.pick(provider)?.stream(provider, request).await
    }

    async fn list_models(
        &self,
        provider: &ProviderCredentials,
    ) -> Result<Vec<RemoteModel>, LlmError> {
        self.pick(provider)?.list_models(provider).await
    }

    async fn embed(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        inputs: &[String],
        dimensions: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        self.pick(provider)?
            .embed(provider, model, inputs, dimensions)
            .await
    }

    async fn transcribe(
        &self,
        provider: &ProviderCredentials,
        model: &str,
        audio: Vec<u8>,
        filename: &str,
        language: Option<&str>,
    ) -> Result<String, LlmError> {
        self.pick(provider)?
            .transcribe(provider, model, audio, filename, language)
            .await
    }
}
