//! The Smart Bird encoder and text classifier: word and learned position embeddings with a
//! LayerNorm, the layers, attention pooling and a linear classifier (the `fastformer` crate's
//! shape of model). Our own safetensors layout (no reference checkpoint exists):
//!
//! ```text
//! embeddings.{word_embeddings,position_embeddings}.weight, embeddings.LayerNorm.{weight,bias}
//! encoder.layer.{i}.sketch.{down,query,key}.{weight,bias}
//! encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}
//! encoder.layer.{i}.attention.output.{dense,LayerNorm}.{weight,bias}
//! encoder.layer.{i}.intermediate.dense.{weight,bias}, encoder.layer.{i}.output.{dense,LayerNorm}.{weight,bias}
//! pooler.{att_fc1,att_fc2}.{weight,bias}, classifier.{weight,bias}
//! ```
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder, VarMap};
use layers::encoder::{AttentionPooling, Embeddings};

use crate::attention::{AttentionMode, Padding, Profile};
use crate::config::Config;
use crate::error::{Result, SmartBirdError};
use crate::layer::Layer;

#[derive(Debug, Clone)]
pub struct Outputs {
    /// The last layer's output `[B, N, D]`.
    pub hidden: Tensor,
    /// `[B, D]`.
    pub pooled: Tensor,
    /// `[B, num_labels]`.
    pub logits: Tensor,
    /// Per layer, the selected keys `[B, heads, N, K]` (empty in dense mode).
    pub indices: Vec<Vec<i32>>,
    /// Where the attention's time went.
    pub profile: Profile,
}

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
        let w = |e: candle_core::Error| SmartBirdError::Weights(e.to_string());
        let emb = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, i, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            cfg: cfg.clone(),
            embeddings: Embeddings::new(
                cfg.vocab_size,
                cfg.max_position_embeddings,
                d,
                cfg.layer_norm_eps,
                emb.pp("word_embeddings"),
                emb.pp("position_embeddings"),
                emb.pp("LayerNorm"),
            )
            .map_err(w)?,
            layers,
            pooler: AttentionPooling::new(d, vb.pp("pooler")).map_err(w)?,
            classifier: linear(d, cfg.num_labels, vb.pp("classifier")).map_err(w)?,
            device: vb.device().clone(),
        })
    }

    /// A model with freshly initialised weights, and the `VarMap` holding them (for [`save`]).
    pub fn random(cfg: &Config, device: &Device) -> Result<(Self, VarMap)> {
        let map = VarMap::new();
        let model = Model::new(cfg, VarBuilder::from_varmap(&map, DType::F32, device))?;
        Ok((model, map))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Classifies equally long sequences (`pad_token_id` marks padding) with Smart Bird attention.
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<Outputs> {
        self.forward_with(ids, AttentionMode::Sparse)
    }

    pub fn forward_with(&self, ids: &[Vec<u32>], mode: AttentionMode) -> Result<Outputs> {
        // One entry into the thread pool for the whole pass (layers::pool).
        layers::pool::on_pool(|| self.forward_in_pool(ids, mode))
    }

    fn forward_in_pool(&self, ids: &[Vec<u32>], mode: AttentionMode) -> Result<Outputs> {
        let (b, n, padding) = self.check(ids)?;
        let mut h = self.embeddings.forward(ids, &self.device)?;
        let mut indices = Vec::new();
        let mut profile = Profile::default();
        let layer_count = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let (out, idx) = layer.forward(&h, &padding, mode, &mut profile)?;
            h = out;
            layers::finite::ensure_finite(&h, || {
                format!("in the output of layer {i} of {layer_count}")
            })?;
            indices.extend(idx);
        }
        let mask: Vec<f32> = padding.tokens.iter().map(|&t| f32::from(t)).collect();
        let mask = Tensor::from_vec(mask, (b, n), &self.device)?;
        let pooled = self.pooler.forward(&h, &mask)?;
        let logits = self.classifier.forward(&pooled)?;
        Ok(Outputs {
            hidden: h,
            pooled,
            logits,
            indices,
            profile,
        })
    }

    fn check(&self, ids: &[Vec<u32>]) -> Result<(usize, usize, Padding)> {
        let (b, n) = layers::tokens::check_batch(
            ids,
            self.cfg.vocab_size,
            Some((self.cfg.max_position_embeddings, "max_position_embeddings")),
        )?;
        let tokens = layers::tokens::padding_mask(ids, self.cfg.pad_token_id)?;
        let key_mask: Vec<f32> = tokens
            .iter()
            .map(|&t| if t == 1 { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let key_mask = Tensor::from_vec(key_mask, (b, n), &self.device)?;
        let token_mask = Tensor::from_slice(&tokens, (b, n), &self.device)?;
        Ok((
            b,
            n,
            Padding {
                tokens,
                token_mask,
                key_mask,
            },
        ))
    }
}

/// Writes `dir/config.json` and `dir/model.safetensors` (the weights in `map`).
pub fn save(dir: &Path, cfg: &Config, map: &VarMap) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SmartBirdError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_json()?).map_err(io(&config))?;
    map.save(dir.join("model.safetensors"))?;
    Ok(())
}

/// Loads `dir/config.json` and the weights (`model.safetensors` or shards), in f32.
pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let cfg = Config::from_dir(dir)?;
    let files = layers::files::safetensors_files(dir)?;
    // Dtypes, shapes and finiteness checked per tensor (see `layers::weights`).
    let vb = layers::weights::var_builder(&files, DType::F32, device)?;
    Model::new(&cfg, vb)
}
