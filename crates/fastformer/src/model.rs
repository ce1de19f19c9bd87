//! The encoder (learned positions, LayerNorm, layers, attention pooling) and the text classifier
//! around it, with the official code's tensor names.
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

use crate::config::Config;
use crate::error::{FastformerError, Result};
use crate::layer::Layer;

/// Attention pooling: `α = exp(fc2(tanh(fc1(x)))) ⊙ mask`, `α / (Σα + 1e-8)`, `Σ_t α_t x_t`.
#[derive(Debug, Clone)]
pub struct AttentionPooling {
    att_fc1: Linear,
    att_fc2: Linear,
}

impl AttentionPooling {
    pub fn new(d: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(AttentionPooling {
            att_fc1: linear(d, d, vb.pp("att_fc1"))?,
            att_fc2: linear(d, 1, vb.pp("att_fc2"))?,
        })
    }

    /// `x` `[B, T, D]`, `mask` `[B, T]` (1 token, 0 padding) -> `[B, D]`.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let alpha = self
            .att_fc2
            .forward(&self.att_fc1.forward(x)?.tanh()?)?
            .exp()?;
        let alpha = alpha.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?;
        let alpha = alpha.broadcast_div(&(alpha.sum_keepdim(1)? + 1e-8)?)?;
        x.broadcast_mul(&alpha)?.sum(1)
    }
}

/// Everything the reference exposes, for checking layer by layer.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// After positions and the embedding LayerNorm: `[B, T, D]`.
    pub embedding_output: Tensor,
    /// Each layer's output: `[B, T, D]`.
    pub layer_outputs: Vec<Tensor>,
    /// `[B, D]`.
    pub pooled: Tensor,
    /// `[B, num_labels]`.
    pub logits: Tensor,
}

/// The classifier: word embedding, Fastformer encoder, attention pooling, `dense_linear`.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    word_embedding: Embedding,
    position_embeddings: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: AttentionPooling,
    classifier: Linear,
    device: Device,
}

impl Model {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.hidden_size;
        let enc = vb.pp("fastformer_model");
        let build = || -> candle_core::Result<Model> {
            // Layer-wise sharing: every layer reads layer 0's weights.
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| {
                    Layer::new(
                        cfg,
                        enc.pp(format!("encoders.{}", if cfg.share_layers { 0 } else { i })),
                    )
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Ok(Model {
                cfg: cfg.clone(),
                word_embedding: embedding(cfg.vocab_size, d, vb.pp("word_embedding"))?,
                position_embeddings: embedding(
                    cfg.max_position_embeddings,
                    d,
                    enc.pp("position_embeddings"),
                )?,
                embedding_norm: layer_norm(d, cfg.layer_norm_eps, enc.pp("LayerNorm"))?,
                layers,
                pooler: AttentionPooling::new(d, enc.pp("poolers.0"))?,
                classifier: linear(d, cfg.num_labels, vb.pp("dense_linear"))?,
                device: vb.device().clone(),
            })
        };
        build().map_err(FastformerError::Weights)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Classifies a batch of equally long sequences; `pad_token_id` marks padding (as the
    /// reference's `input_ids.bool()` mask).
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Outputs> {
        let (b, t) = (ids.len(), ids.first().map_or(0, |s| s.len()));
        if b == 0 || t == 0 {
            return Err(FastformerError::Input("empty input: no tokens".into()));
        }
        if ids.iter().any(|s| s.len() != t) {
            return Err(FastformerError::Input(format!(
                "every sequence must have one length (the first has {t}): pad them"
            )));
        }
        if t > self.cfg.max_position_embeddings {
            return Err(FastformerError::Input(format!(
                "sequence length {t} is past max_position_embeddings {}",
                self.cfg.max_position_embeddings
            )));
        }
        if let Some(bad) = ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= self.cfg.vocab_size)
        {
            return Err(FastformerError::Input(format!(
                "token id {bad} is out of range (vocab_size {})",
                self.cfg.vocab_size
            )));
        }
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let mask: Vec<f32> = flat
            .iter()
            .map(|&id| {
                if id == self.cfg.pad_token_id {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let ids = Tensor::from_vec(flat, (b, t), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let positions = Tensor::arange(0u32, t as u32, &self.device)?;
        let x = self
            .word_embedding
            .forward(&ids)?
            .broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        let embedding_output = self.embedding_norm.forward(&x)?;
        let mut layer_outputs = Vec::with_capacity(self.layers.len());
        let mut h = embedding_output.clone();
        for layer in &self.layers {
            h = layer.forward(&h, &mask)?;
            layer_outputs.push(h.clone());
        }
        let pooled = self.pooler.forward(&h, &mask)?;
        let logits = self.classifier.forward(&pooled)?;
        Ok(Outputs {
            embedding_output,
            layer_outputs,
            pooled,
            logits,
        })
    }
}

/// Loads `dir/config.json` and `dir/model.safetensors` (f32).
pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let cfg = Config::from_dir(dir)?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(FastformerError::Io {
            path: weights,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors in the checkpoint directory",
            ),
        });
    }
    // SAFETY: the file is memory-mapped read-only, as every mmap-based loader does.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) }
        .map_err(FastformerError::Weights)?;
    Model::new(&cfg, vb)
}
