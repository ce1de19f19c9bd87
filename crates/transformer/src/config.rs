//! The configuration, read from an HF Llama `config.json` (the fields a dense baseline needs;
//! others, such as token ids, are ignored).
use std::path::Path;

use serde::Deserialize;

use crate::error::{Result, TransformerError};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); all heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama 3's frequency scaling and the like: not supported (refused, not ignored).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

impl Config {
    /// A Llama-style config of the given sizes (untied embeddings, θ = 10000, ε = 1e-6).
    pub fn dense(
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        intermediate_size: usize,
        vocab_size: usize,
    ) -> Self {
        Config {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            vocab_size,
            rms_norm_eps: default_eps(),
            rope_theta: default_theta(),
            tie_word_embeddings: false,
            rope_scaling: None,
            attention_bias: false,
        }
    }

    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Config = layers::config::parse(json)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_json(&layers::files::read_to_string(path)?)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Floats per position of one layer's keys (and of its values).
    pub fn kv_row(&self) -> usize {
        self.kv_heads() * self.head_dim()
    }

    /// Rejects sizes the model cannot be built with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(TransformerError::Config(msg));
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        let (h, hk) = (self.num_attention_heads, self.kv_heads());
        if hk == 0 || h % hk != 0 {
            return bad(format!(
                "num_key_value_heads ({hk}) must divide num_attention_heads ({h})"
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return bad(format!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({h}); give head_dim",
                self.hidden_size
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        layers::config::positive("rms_norm_eps", self.rms_norm_eps)?;
        layers::config::positive("rope_theta", self.rope_theta)?;
        if let Some(s) = &self.rope_scaling {
            if !s.is_null() {
                return bad(format!("rope_scaling {s} is not supported"));
            }
        }
        if self.attention_bias {
            return bad("attention_bias = true is not supported".into());
        }
        Ok(())
    }
}
