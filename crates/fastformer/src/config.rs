//! The reference code's BERT-style config (`fastformer.json`), plus the paper's parameter-sharing
//! switches.
use std::path::Path;

use serde::Deserialize;

use crate::error::{FastformerError, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_pooler")]
    pub pooler_type: String,
    #[serde(default = "default_labels")]
    pub num_labels: usize,
    #[serde(default)]
    pub pad_token_id: u32,
    /// Paper §3: the value projection is the query's (`W_v = W_q`). The official code always
    /// shares; `false` reads a separate `attention.self.value` projection.
    #[serde(default = "yes")]
    pub share_query_value: bool,
    /// Paper §3: every layer uses layer 0's weights.
    #[serde(default)]
    pub share_layers: bool,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pooler() -> String {
    "weightpooler".into()
}
fn default_labels() -> usize {
    2
}
fn yes() -> bool {
    true
}

impl Config {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        layers::config::from_dir(dir, Self::from_json)
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Config = layers::config::parse(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FastformerError::Config(m));
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act `{}` is not supported (expected gelu)",
                self.hidden_act
            ));
        }
        if self.pooler_type != "weightpooler" {
            return bad(format!(
                "pooler_type `{}` is not supported (expected weightpooler)",
                self.pooler_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("num_labels", self.num_labels),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        layers::config::positive("layer_norm_eps", self.layer_norm_eps)?;
        layers::config::token_id("pad_token_id", self.pad_token_id as usize, self.vocab_size)?;
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
