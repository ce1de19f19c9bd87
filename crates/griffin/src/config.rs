//! The model configuration, read from a RecurrentGemma checkpoint's own `config.json`
//! (HF `model_type: recurrent_gemma`), with presets for the published and the paper's sizes.
use std::path::Path;

use serde::Deserialize;

use crate::error::{GriffinError, Result};

/// What a residual block's temporal-mixing layer is (Griffin §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    /// Recurrent block: GeLU branch × (Linear → Conv1D → RG-LRU).
    Recurrent,
    /// Local multi-query attention over a sliding window.
    Attention,
}

/// A Griffin / Hawk model's shape. Hawk is `block_types = [Recurrent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// MLP width per branch (HF's `intermediate_size / 2`).
    pub mlp_width: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub lru_width: usize,
    /// Keys a query sees, itself included: key j is visible to query i iff i - window < j <= i.
    pub attention_window_size: usize,
    pub conv1d_width: usize,
    /// `tanh(logits / cap) * cap`; none when absent or 0.
    pub logits_soft_cap: Option<f64>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub partial_rotary_factor: f64,
    /// Cycled over the layers: layer i is `block_types[i % len]`.
    pub block_types: Vec<BlockType>,
    /// Multiply embeddings by sqrt(hidden_size) rounded to bf16 (RecurrentGemma: yes).
    pub embeddings_scale_by_sqrt_dim: bool,
}

/// The fields of HF's `config.json` this reads; others are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    lru_width: Option<usize>,
    attention_window_size: usize,
    conv1d_width: Option<usize>,
    logits_soft_cap: Option<f64>,
    rms_norm_eps: Option<f64>,
    hidden_activation: Option<String>,
    block_types: Vec<String>,
    // Published checkpoints: top level. transformers 5: inside `rope_parameters`.
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    embeddings_scale_by_sqrt_dim: Option<bool>,
    attention_bias: Option<bool>,
    // Checked against the vocabulary, not otherwise used by the model.
    pad_token_id: Option<serde_json::Value>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    partial_rotary_factor: Option<f64>,
    rope_type: Option<String>,
}

fn bad(msg: impl Into<String>) -> GriffinError {
    GriffinError::Config(msg.into())
}

impl Config {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        layers::config::from_dir(dir, Self::from_json)
    }

    /// Parses HF `config.json` text, rejecting values this implementation does not compute.
    pub fn from_json(text: &str) -> Result<Self> {
        let hf: HfConfig = layers::config::parse(text)?;
        if let Some(m) = &hf.model_type {
            if m != "recurrent_gemma" {
                return Err(bad(format!("model_type `{m}` is not recurrent_gemma")));
            }
        }
        if let Some(act) = &hf.hidden_activation {
            if act != "gelu_pytorch_tanh" && act != "gelu_tanh" {
                return Err(bad(format!(
                    "hidden_activation `{act}` is not supported (expected gelu_pytorch_tanh)"
                )));
            }
        }
        if hf.attention_bias == Some(true) {
            return Err(bad(
                "attention_bias = true is not supported (RecurrentGemma has none)",
            ));
        }
        let block_types = hf
            .block_types
            .iter()
            .map(|b| match b.as_str() {
                "recurrent" => Ok(BlockType::Recurrent),
                "attention" => Ok(BlockType::Attention),
                other => Err(bad(format!(
                    "block_types: unknown block `{other}` (expected recurrent or attention)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let rope = hf.rope_parameters.as_ref();
        if let Some(t) = rope.and_then(|r| r.rope_type.as_deref()) {
            if t != "default" {
                return Err(bad(format!(
                    "rope_type `{t}` is not supported (expected default)"
                )));
            }
        }
        for (key, ids) in [
            ("pad_token_id", &hf.pad_token_id),
            ("bos_token_id", &hf.bos_token_id),
            ("eos_token_id", &hf.eos_token_id),
        ] {
            if let Some(ids) = ids {
                layers::config::token_ids(key, ids, hf.vocab_size)?;
            }
        }
        if let Some(cap) = hf.logits_soft_cap {
            // 0 means no cap (as HF); a negative or non-finite cap is a mistake, not "none".
            layers::config::non_negative("logits_soft_cap", cap)?;
        }
        let head_dim = hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1));
        let config = Config {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            mlp_width: hf.intermediate_size / 2,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(1),
            head_dim,
            lru_width: hf.lru_width.unwrap_or(hf.hidden_size),
            attention_window_size: hf.attention_window_size,
            conv1d_width: hf.conv1d_width.unwrap_or(4),
            logits_soft_cap: hf.logits_soft_cap.filter(|c| *c > 0.0),
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: rope
                .and_then(|r| r.rope_theta)
                .or(hf.rope_theta)
                .unwrap_or(10_000.0),
            partial_rotary_factor: rope
                .and_then(|r| r.partial_rotary_factor)
                .or(hf.partial_rotary_factor)
                .unwrap_or(0.5),
            block_types,
            embeddings_scale_by_sqrt_dim: hf.embeddings_scale_by_sqrt_dim.unwrap_or(true),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("lru_width", self.lru_width),
            ("attention_window_size", self.attention_window_size),
            ("conv1d_width", self.conv1d_width),
            ("mlp_width (intermediate_size / 2)", self.mlp_width),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(bad(format!("{name} must be positive")));
            }
        }
        layers::config::positive("rms_norm_eps", self.rms_norm_eps)?;
        layers::config::positive("rope_theta", self.rope_theta)?;
        layers::config::in_range(
            "partial_rotary_factor",
            self.partial_rotary_factor,
            0.0,
            1.0,
        )?;
        if let Some(cap) = self.logits_soft_cap {
            layers::config::positive("logits_soft_cap", cap)?;
        }
        if self.block_types.is_empty() {
            return Err(bad("block_types is empty"));
        }
        if !self.lru_width.is_multiple_of(self.num_attention_heads) {
            return Err(bad(format!(
                "lru_width {} is not a multiple of num_attention_heads {} (the RG-LRU gates are block-diagonal per head)",
                self.lru_width, self.num_attention_heads
            )));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        let rot = self.rotary_dim();
        if rot == 0 || !rot.is_multiple_of(2) || rot > self.head_dim {
            return Err(bad(format!(
                "partial_rotary_factor {} gives a rotary dimension of {rot} for head_dim {}: it must be even and positive",
                self.partial_rotary_factor, self.head_dim
            )));
        }
        Ok(())
    }

    /// The block type of layer `i`.
    pub fn block_type(&self, i: usize) -> BlockType {
        self.block_types[i % self.block_types.len()]
    }

    /// Head dimensions rotated by RoPE (the first ones of each head).
    pub fn rotary_dim(&self) -> usize {
        (self.partial_rotary_factor * self.head_dim as f64).round() as usize
    }

    fn preset(
        width: usize,
        heads: usize,
        lru: usize,
        layers: usize,
        window: usize,
        pattern: Vec<BlockType>,
        gemma: bool,
    ) -> Self {
        Config {
            vocab_size: 256_000,
            hidden_size: width,
            mlp_width: 3 * width,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: 1,
            head_dim: width / heads,
            lru_width: lru,
            attention_window_size: window,
            conv1d_width: 4,
            logits_soft_cap: gemma.then_some(30.0),
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            partial_rotary_factor: 0.5,
            block_types: pattern,
            embeddings_scale_by_sqrt_dim: gemma,
        }
    }

    /// `google/recurrentgemma-2b` (docs/griffin.md §5).
    pub fn recurrent_gemma_2b() -> Self {
        use BlockType::*;
        Self::preset(
            2560,
            10,
            2560,
            26,
            2048,
            vec![Recurrent, Recurrent, Attention],
            true,
        )
    }

    /// `google/recurrentgemma-9b`.
    pub fn recurrent_gemma_9b() -> Self {
        use BlockType::*;
        Self::preset(
            4096,
            16,
            4096,
            38,
            2048,
            vec![Recurrent, Recurrent, Attention],
            true,
        )
    }

    /// The paper's Griffin 7B (no embedding scale, no soft cap).
    pub fn griffin_7b() -> Self {
        use BlockType::*;
        Self::preset(
            4096,
            32,
            5632,
            32,
            1024,
            vec![Recurrent, Recurrent, Attention],
            false,
        )
    }

    /// The paper's Hawk 7B: every block recurrent.
    pub fn hawk_7b() -> Self {
        Self::preset(4096, 32, 5632, 32, 1024, vec![BlockType::Recurrent], false)
    }
}
