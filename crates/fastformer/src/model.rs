//! The encoder (learned positions, LayerNorm, layers, attention pooling) and the text classifier
//! around it, with the official code's tensor names.
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

use crate::config::Config;
use crate::error::Result;
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
        build().map_err(layers::error::weights)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Classifies a batch of equally long sequences; `pad_token_id` marks padding (as the
    /// reference's `input_ids.bool()` mask).
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Outputs> {
        let (b, t) = layers::tokens::check_batch(
            ids,
            self.cfg.vocab_size,
            Some((self.cfg.max_position_embeddings, "max_position_embeddings")),
        )?;
        // The reference's `input_ids.bool()` mask; a row of padding only is refused, as Smart
        // Bird refuses it (its pooled vector would average over no token).
        let mask: Vec<f32> = layers::tokens::padding_mask(ids, self.cfg.pad_token_id)?
            .into_iter()
            .map(f32::from)
            .collect();
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
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
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &mask)?;
            layers::finite::ensure_finite(&h, || format!("in the output of layer {i} of {n}"))?;
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

/// Loads `dir/config.json` and the weights (`model.safetensors` or shards), in f32.
pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let cfg = Config::from_dir(dir)?;
    let files = layers::files::safetensors_files(dir)?;
    // Dtypes, shapes and finiteness checked per tensor (see `layers::weights`).
    let vb = layers::weights::var_builder(&files, DType::F32, device)?;
    Model::new(&cfg, vb)
}
