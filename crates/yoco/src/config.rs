//! The model configuration: the reference's `YOCOArgs` fields, read from `config.json`
//! (`sliding_window` null for the gated-retention self-decoder, a number for sliding windows).
use std::path::Path;

use serde::Deserialize;

use crate::error::{Result, YocoError};

/// What the self-decoder's layers mix tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfDecoderKind {
    /// gRetNet: gated retention, a constant-size state per layer.
    GatedRetention,
    /// Sliding-window attention over `window` keys (itself included), a `window`-slot cache.
    SlidingWindow { window: usize },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub dim: usize,
    /// Self-decoder plus cross-decoder layers (half each).
    pub n_layers: usize,
    /// SwiGLU inner width.
    pub hidden_dim: usize,
    pub n_self_heads: usize,
    pub n_attn_heads: usize,
    pub n_attn_kv_heads: usize,
    pub vocab_size: usize,
    #[serde(default)]
    pub max_batch_size: usize,
    /// Positions the RoPE table (and by default the KV cache) covers; -1 in the reference means
    /// unset.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: i64,
    #[serde(default = "one")]
    pub model_parallel_size: usize,
    #[serde(default)]
    pub load_checkpoint: bool,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub sliding_window: Option<usize>,
}

fn default_max_seq_len() -> i64 {
    -1
}
fn one() -> usize {
    1
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-5
}

fn bad(msg: impl Into<String>) -> YocoError {
    YocoError::Config(msg.into())
}

impl Config {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        layers::config::from_dir(dir, Self::from_json)
    }

    /// Parses and validates `config.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Config = layers::config::parse(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("hidden_dim", self.hidden_dim),
            ("n_self_heads", self.n_self_heads),
            ("n_attn_heads", self.n_attn_heads),
            ("n_attn_kv_heads", self.n_attn_kv_heads),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is 0")));
            }
        }
        layers::config::positive("rope_theta", self.rope_theta)?;
        layers::config::positive("norm_eps", self.norm_eps)?;
        if self.max_seq_len == 0 || self.max_seq_len < -1 {
            return Err(bad(format!(
                "max_seq_len {} must be positive (or -1: unset)",
                self.max_seq_len
            )));
        }
        if !self.n_layers.is_multiple_of(2) {
            return Err(bad(format!(
                "n_layers {} is odd: YOCO splits it into equal self- and cross-decoders",
                self.n_layers
            )));
        }
        for (name, heads) in [
            ("n_self_heads", self.n_self_heads),
            ("n_attn_heads", self.n_attn_heads),
        ] {
            if !self.dim.is_multiple_of(heads) || !(self.dim / heads).is_multiple_of(2) {
                return Err(bad(format!(
                    "dim {} over {name} {heads} does not give an even head size",
                    self.dim
                )));
            }
        }
        if !self.n_attn_heads.is_multiple_of(self.n_attn_kv_heads) {
            return Err(bad(format!(
                "n_attn_heads {} is not a multiple of n_attn_kv_heads {}",
                self.n_attn_heads, self.n_attn_kv_heads
            )));
        }
        if self.model_parallel_size != 1 {
            return Err(bad(format!(
                "model_parallel_size {} is not supported: checkpoints must be merged (1)",
                self.model_parallel_size
            )));
        }
        if self.sliding_window == Some(0) {
            return Err(bad(
                "sliding_window is 0: use null for gated retention, or a window ≥ 1",
            ));
        }
        Ok(())
    }

    pub fn self_decoder(&self) -> SelfDecoderKind {
        match self.sliding_window {
            Some(window) => SelfDecoderKind::SlidingWindow { window },
            None => SelfDecoderKind::GatedRetention,
        }
    }

    /// Layers in each half.
    pub fn half_layers(&self) -> usize {
        self.n_layers / 2
    }

    pub fn self_head_dim(&self) -> usize {
        self.dim / self.n_self_heads
    }

    pub fn attn_head_dim(&self) -> usize {
        self.dim / self.n_attn_heads
    }

    /// The reference's `yoco_3b` (docs/yoco.md §6).
    pub fn yoco_3b() -> Self {
        Config {
            dim: 3072,
            n_layers: 26,
            hidden_dim: 8192,
            n_self_heads: 24,
            n_attn_heads: 24,
            n_attn_kv_heads: 8,
            vocab_size: 100_288,
            max_batch_size: 1,
            max_seq_len: 1 << 20,
            model_parallel_size: 1,
            load_checkpoint: false,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            sliding_window: None,
        }
    }
}
