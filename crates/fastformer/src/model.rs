//! The encoder (learned positions, LayerNorm, layers, attention pooling) and the text classifier
//! around it, with the official code's tensor names.
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use layers::encoder::{AttentionPooling, Embeddings};

use crate::config::Config;
use crate::error::Result;
use crate::layer::Layer;

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
    embeddings: Embeddings,
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
                embeddings: Embeddings::new(
                    cfg.vocab_size,
                    cfg.max_position_embeddings,
                    d,
                    cfg.layer_norm_eps,
                    vb.pp("word_embedding"),
                    enc.pp("position_embeddings"),
                    enc.pp("LayerNorm"),
                )?,
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
        // One entry into the thread pool for the whole pass (layers::pool).
        layers::pool::on_pool(|| self.forward_in_pool(ids))
    }

    fn forward_in_pool(&self, ids: &[Vec<u32>]) -> Result<Outputs> {
        layers::tokens::check_batch(
            ids,
            self.cfg.vocab_size,
            Some((self.cfg.max_position_embeddings, "max_position_embeddings")),
        )?;
        // The reference's `input_ids.bool()` mask; a row of padding only is refused, as Smart
        // Bird refuses it (its pooled vector would average over no token).
        let mask = layers::encoder::padding_mask(ids, self.cfg.pad_token_id, &self.device)?;
        let embedding_output = self.embeddings.forward(ids, &self.device)?;
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
