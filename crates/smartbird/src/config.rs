//! The model configuration: BERT-style fields as the `fastformer` crate's, plus Smart Bird's
//! sketch and sampling (our names: no reference config exists).
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SmartBirdError};

/// How each head's keys are chosen from the sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Gumbel-top-K: `keys_per_query` keys drawn without replacement with probability
    /// proportional to the sketch, different noise per head and layer (seeded).
    Gumbel,
    /// The `keys_per_query` most probable keys, the same for every head (deterministic inference).
    TopK,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_labels")]
    pub num_labels: usize,
    #[serde(default)]
    pub pad_token_id: u32,
    /// The sketch's dimension `d ≪ hidden_size`.
    pub sketch_dim: usize,
    /// Keys each head of each query attends to (`K`).
    pub keys_per_query: usize,
    #[serde(default = "default_sampling")]
    pub sampling: Sampling,
    /// Seed of the Gumbel noise; layer `l` uses `seed + l`.
    #[serde(default)]
    pub seed: u64,
    /// Every token query keeps its own position among its keys.
    #[serde(default)]
    pub include_self: bool,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_labels() -> usize {
    2
}
fn default_sampling() -> Sampling {
    Sampling::Gumbel
}

fn bad(m: impl Into<String>) -> SmartBirdError {
    SmartBirdError::Config(m.into())
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
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("num_labels", self.num_labels),
            ("sketch_dim", self.sketch_dim),
            ("keys_per_query", self.keys_per_query),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is 0")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        layers::config::positive("layer_norm_eps", self.layer_norm_eps)?;
        layers::config::token_id("pad_token_id", self.pad_token_id as usize, self.vocab_size)?;
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| bad(e.to_string()))
    }
}
