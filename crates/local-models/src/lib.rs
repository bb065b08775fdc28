//! Models that run inside the server, with no API key and no network: sentence-transformers
//! embedding models (BERT family, e.g. `all-MiniLM-L6-v2`) read from a folder and run on
//! the CPU with candle, behind `domain::llm::LlmClient` for providers of kind `local`.
//!
//! Invariants:
//! - A model is a sub-folder of the configured models folder holding `config.json`,
//!   `tokenizer.json` and `model.safetensors`; its name is the folder's name, and names
//!   that could leave the folder (`..`, separators) are refused.
//! - A model is loaded once, on first use, and kept; a failed load is retried next time.
//! - Inference runs on blocking threads, one batch at a time per process (a batch already
//!   uses every core), never on the async workers.
//! - Vectors are L2-normalised.

mod bert;
mod encoder;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use domain::{
    llm::{ChatRequest, Embeddings, EventStream, LlmClient, LlmError},
    models::{Capabilities, ProviderCredentials, RemoteModel, Usage},
};
pub use encoder::{Encoded, SentenceEncoder};
use tokio::sync::{OnceCell, Semaphore};

type Slot = Arc<OnceCell<Arc<SentenceEncoder>>>;

/// The models of one folder; cheap to share.
pub struct LocalModels {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Slot>>,
    running: Semaphore,
}

const ONLY_EMBEDS: &str =
    "local models only embed text: use them as a knowledge base's embedding model";

impl LocalModels {
    /// Models are looked for in `dir`, which need not exist yet.
    pub fn new(dir: impl Into<PathBuf>) -> LocalModels {
        LocalModels {
            dir: dir.into(),
            loaded: Mutex::default(),
            running: Semaphore::new(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names of the folder's models, sorted.
    pub fn names(&self) -> Result<Vec<String>, LlmError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| {
            LlmError::NotFound(format!(
                "the local models folder {} cannot be read: {err}",
                self.dir.display()
            ))
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| SentenceEncoder::is_model_dir(&e.path()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| valid_name(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The loaded model `name`, loading it on first use.
    pub async fn model(&self, name: &str) -> Result<Arc<SentenceEncoder>, LlmError> {
        if !valid_name(name) {
            return Err(LlmError::NotFound(format!(
                "`{name}` is not a local model name (a folder name inside the models folder)"
            )));
        }
        let slot = self
            .loaded
            .lock()
            .expect("the model table is never poisoned")
            .entry(name.to_string())
            .or_default()
            .clone();
        let dir = self.dir.join(name);
        let model = slot
            .get_or_try_init(|| async move {
                if !SentenceEncoder::is_model_dir(&dir) {
                    return Err(LlmError::NotFound(format!(
                        "there is no local model `{name}`: its folder needs config.json, tokenizer.json and model.safetensors"
                    )));
                }
                let started = std::time::Instant::now();
                let loaded = tokio::task::spawn_blocking(move || SentenceEncoder::load(&dir))
                    .await
                    .map_err(|err| LlmError::Misconfigured(format!("loading panicked: {err}")))?
                    .map_err(|err| {
                        LlmError::Misconfigured(format!("the local model `{name}`: {err}"))
                    })?;
                tracing::info!(
                    model = name,
                    dimensions = loaded.dimensions(),
                    max_tokens = loaded.max_tokens(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded a local model"
                );
                Ok(Arc::new(loaded))
            })
            .await?;
        Ok(model.clone())
    }

    /// Unit vectors for `inputs` from the model `name`.
    pub async fn encode(&self, name: &str, inputs: &[String]) -> Result<Encoded, LlmError> {
        let model = self.model(name).await?;
        if inputs.is_empty() {
            return Ok(Encoded {
                vectors: Vec::new(),
                tokens: 0,
            });
        }
        let _turn = self
            .running
            .acquire()
            .await
            .map_err(|_| LlmError::Misconfigured("the local models are shut down".into()))?;
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || model.embed(&inputs))
            .await
            .map_err(|err| LlmError::Misconfigured(format!("the local model panicked: {err}")))?
            .map_err(LlmError::Misconfigured)
    }
}

/// A plain folder name: no separators, no leading dot, nothing that leaves the folder.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[async_trait]
impl LlmClient for LocalModels {
    async fn stream(
        &self,
        _provider: &ProviderCredentials,
        _request: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        Err(LlmError::Misconfigured(ONLY_EMBEDS.into()))
    }

    async fn list_models(
        &self,
        _provider: &ProviderCredentials,
    ) -> Result<Vec<RemoteModel>, LlmError> {
        Ok(self
            .names()?
            .into_iter()
            .map(|name| RemoteModel {
                name,
                capabilities: Some(Capabilities {
                    reasoning: false,
                    vision: false,
                    tools: false,
                    structured_output: false,
                    audio: false,
                }),
                ..RemoteModel::default()
            })
            .collect())
    }

    async fn embed(
        &self,
        _provider: &ProviderCredentials,
        model: &str,
        inputs: &[String],
        dimensions: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        let encoded = self.encode(model, inputs).await?;
        if let (Some(wanted), Some(first)) = (dimensions, encoded.vectors.first())
            && wanted as usize != first.len()
        {
            return Err(LlmError::Misconfigured(format!(
                "the local model `{model}` makes vectors of {} dimensions, not {wanted}",
                first.len()
            )));
        }
        Ok(Embeddings {
            vectors: encoded.vectors,
            usage: Usage {
                input_tokens: encoded.tokens,
                ..Usage::default()
            },
        })
    }

    async fn transcribe(
        &self,
        _provider: &ProviderCredentials,
        _model: &str,
        _audio: Vec<u8>,
        _filename: &str,
        _language: Option<&str>,
    ) -> Result<String, LlmError> {
        Err(LlmError::Misconfigured(ONLY_EMBEDS.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn model_names_stay_inside_the_folder() {
        assert!(valid_name("all-MiniLM-L6-v2"));
        assert!(valid_name("bge_small.en-1.5"));
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "../etc", "x y"] {
            assert!(!valid_name(bad), "{bad:?} was accepted");
        }
    }
}
