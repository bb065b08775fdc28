//! One sentence-transformers model from its folder: tokenizer, BERT encoder, pooling and
//! L2 normalisation, turning texts into unit vectors.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::{Bert, BertConfig};

/// Texts encoded in one forward pass. The attention scores of a pass take
/// `group × heads × len² × 4` bytes (4 texts of 256 tokens with 12 heads: 12 MB); larger
/// groups were no faster on the CPU and spent more time faulting in fresh pages.
const GROUP: usize = 4;

/// How token states become one vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A loaded model; `embed` is CPU-bound and blocking.
pub struct SentenceEncoder {
    tokenizer: Tokenizer,
    bert: Bert,
    pooling: Pooling,
    dimensions: usize,
    max_tokens: usize,
}

/// What a batch of texts became.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// One unit vector per text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read (after truncation), special tokens included.
    pub tokens: u64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("could not read {}: {err}", file_name(path)))?;
    serde_json::from_str(&text).map_err(|err| format!("{} is not valid: {err}", file_name(path)))
}

fn file_name(path: &Path) -> String {
    let mut parts = path.iter().rev().take(2).collect::<Vec<_>>();
    parts.reverse();
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

impl SentenceEncoder {
    /// Whether `dir` holds the three files a model needs.
    pub fn is_model_dir(dir: &Path) -> bool {
        ["config.json", "tokenizer.json", "model.safetensors"]
            .iter()
            .all(|f| dir.join(f).is_file())
    }

    /// Reads `config.json`, `tokenizer.json`, `model.safetensors`, and when present
    /// `sentence_bert_config.json` (the longest input) and `1_Pooling/config.json`.
    pub fn load(dir: &Path) -> Result<SentenceEncoder, String> {
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        config.check()?;
        let max_tokens = match dir.join("sentence_bert_config.json") {
            path if path.is_file() => read_json::<SentenceBertConfig>(&path)?.max_seq_length,
            _ => None,
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
        let pooling = match dir.join("1_Pooling").join("config.json") {
            path if path.is_file() => {
                let pooling: PoolingConfig = read_json(&path)?;
                if pooling.pooling_mode_cls_token {
                    Pooling::Cls
                } else if pooling.pooling_mode_max_tokens {
                    Pooling::Max
                } else {
                    Pooling::Mean
                }
            }
            _ => Pooling::Mean,
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|err| format!("tokenizer.json is not valid: {err}"))?;
        // The file's own padding (often to a fixed 128) is replaced by padding per group.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|err| format!("could not set the tokenizer's truncation: {err}"))?;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|err| format!("could not read model.safetensors: {err}"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|err| format!("model.safetensors is not valid: {err}"))?;
        let bert = Bert::load(vb, &config)
            .map_err(|err| format!("model.safetensors does not match config.json: {err}"))?;
        Ok(SentenceEncoder {
            tokenizer,
            bert,
            pooling,
            dimensions: config.hidden_size,
            max_tokens,
        })
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The longest input in tokens; longer texts are cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Unit vectors for `texts`. Texts of similar length are encoded together, so padding
    /// stays small.
    pub fn embed(&self, texts: &[String]) -> Result<Encoded, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|err| format!("could not tokenise: {err}"))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut vectors = vec![Vec::new(); texts.len()];
        let mut tokens = 0u64;
        for group in order.chunks(GROUP) {
            let len = group
                .iter()
                .map(|&i| encodings[i].get_ids().len())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut ids = vec![0u32; group.len() * len];
            let mut types = vec![0u32; group.len() * len];
            let mut mask = vec![0u32; group.len() * len];
            for (row, &i) in group.iter().enumerate() {
                let encoding = &encodings[i];
                tokens += encoding.get_ids().len() as u64;
                let at = row * len;
                for (j, ((&id, &kind), &seen)) in encoding
                    .get_ids()
                    .iter()
                    .zip(encoding.get_type_ids())
                    .zip(encoding.get_attention_mask())
                    .enumerate()
                {
                    ids[at + j] = id;
                    types[at + j] = kind;
                    mask[at + j] = seen;
                }
            }
            let pooled = self
                .forward(ids, types, mask, group.len(), len)
                .map_err(|err| format!("the model failed: {err}"))?;
            for (&i, vector) in group.iter().zip(pooled) {
                vectors[i] = vector;
            }
        }
        Ok(Encoded { vectors, tokens })
    }

    fn forward(
        &self,
        ids: Vec<u32>,
        types: Vec<u32>,
        mask: Vec<u32>,
        rows: usize,
        len: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, len), &device)?;
        let types = Tensor::from_vec(types, (rows, len), &device)?;
        let mask = Tensor::from_vec(mask, (rows, len), &device)?;
        let states = self.bert.forward(&ids, &types, &mask)?;
        let pooled = match self.pooling {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = states.broadcast_mul(&weights)?.sum(1)?;
                let count = weights.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                // Padding gets a large negative value so it never wins.
                let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let penalty = ((weights.clone() - 1.0)? * 1e9)?;
                states
                    .broadcast_mul(&weights)?
                    .broadcast_add(&penalty)?
                    .max(1)?
            }
        };
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}
