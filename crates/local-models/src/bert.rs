//! A BERT encoder (the architecture of sentence-transformers' MiniLM, BGE and E5 models)
//! on candle's CPU tensors: embeddings, self-attention layers, and token states out.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` that a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Refuses what this encoder cannot run, with the reason.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Some(kind) = &self.model_type
            && kind != "bert"
        {
            return Err(format!(
                "model_type `{kind}` is not a BERT encoder; local models must be BERT-style sentence-transformers models"
            ));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "relu") {
            return Err(format!(
                "the activation `{}` is not supported (gelu or relu)",
                self.hidden_act
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err("hidden_size must be a multiple of num_attention_heads".into());
        }
        Ok(())
    }
}

struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &BertConfig) -> Result<Embeddings> {
        Ok(Embeddings {
            words: embedding(
                config.vocab_size,
                config.hidden_size,
                vb.pp("word_embeddings"),
            )?,
            positions: embedding(
                config.max_position_embeddings,
                config.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                config.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("LayerNorm"),
            )?,
        })
    }

    fn forward(&self, ids: &Tensor, types: &Tensor) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?.unsqueeze(0)?;
        let sum = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .add(&self.token_types.forward(types)?)?;
        self.norm.forward(&sum)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    relu: bool,
}

impl Layer {
    fn load(vb: VarBuilder, config: &BertConfig) -> Result<Layer> {
        let hidden = config.hidden_size;
        let attention = vb.pp("attention");
        Ok(Layer {
            query: linear(hidden, hidden, attention.pp("self").pp("query"))?,
            key: linear(hidden, hidden, attention.pp("self").pp("key"))?,
            value: linear(hidden, hidden, attention.pp("self").pp("value"))?,
            attention_out: linear(hidden, hidden, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(
                hidden,
                config.layer_norm_eps,
                attention.pp("output").pp("LayerNorm"),
            )?,
            intermediate: linear(
                hidden,
                config.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: linear(
                config.intermediate_size,
                hidden,
                vb.pp("output").pp("dense"),
            )?,
            output_norm: layer_norm(
                hidden,
                config.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            heads: config.num_attention_heads,
            relu: config.hidden_act == "relu",
        })
    }

    /// `states`: (batch, len, hidden); `bias`: (batch, 1, 1, len), 0 for tokens and a
    /// large negative number for padding.
    fn forward(&self, states: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, len, hidden) = states.dims3()?;
        let head = hidden / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((batch, len, self.heads, head))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(states)?)?;
        let k = split(self.key.forward(states)?)?;
        let v = split(self.value.forward(states)?)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (head as f64).sqrt())?;
        let weights = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(bias)?)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, len, hidden))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + states)?)?;
        let inner = self.intermediate.forward(&attended)?;
        let inner = if self.relu {
            inner.relu()?
        } else {
            inner.gelu_erf()?
        };
        self.output_norm
            .forward(&(self.output.forward(&inner)? + attended)?)
    }
}

/// The encoder: token ids in, one state per token out.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Bert {
    /// Loads the weights; accepts both bare names (`embeddings.…`) and a `bert.` prefix.
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert { embeddings, layers })
    }

    /// `ids`, `types` and `mask`: (batch, len) u32; returns (batch, len, hidden) f32.
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, len) = mask.dims2()?;
        // 0 where a token is, -1e4 where padding is (the value BERT was trained with).
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 10_000.0)?.reshape((batch, 1, 1, len))?;
        let mut states = self.embeddings.forward(ids, types)?;
        for layer in &self.layers {
            states = layer.forward(&states, &bias)?;
        }
        Ok(states)
    }
}
