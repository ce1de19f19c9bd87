//! The model configuration, read from a BitNet checkpoint's own `config.json` (HF `model_type:
//! bitnet`), including how its linear weights are stored (`quantization_config`, docs/bitnet.md
//! §3).
use std::path::Path;

use serde::Deserialize;

use crate::error::{BitNetError, Result};

/// How the checkpoint stores the BitLinear weights, and so how they are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `uint8 [out/4, in]` packed ternary weights plus `weight_scale [1]`.
    /// `linear_class: autobitlinear` (`microsoft/bitnet-b1.58-2B-4T`): `weight_scale` is `β =
    /// mean|W|` and multiplies the output. `linear_class: bitlinear` (legacy, the default): it is
    /// `1/β` and divides it. Either way the loader keeps `β`.
    Packed { scale: ScaleConvention },
    /// Float master weights `[out, in]` (`quantization_mode: online`, the `-bf16` checkpoint),
    /// ternarised by absmean once at load.
    Master,
}

/// Whether a packed checkpoint's `weight_scale` multiplies (`β`) or divides (`1/β`) the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleConvention {
    Multiply,
    Divide,
}

/// A BitNet b1.58 model's shape (the 2B4T architecture: Llama-like with SubLN and relu²).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// Positions the KV cache holds (and RoPE is defined for).
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub weight_format: WeightFormat,
}

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
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    // Published checkpoints: top level. transformers 5: inside `rope_parameters`.
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    quantization_config: Option<QuantizationConfig>,
    // Checked against the vocabulary, not otherwise used by the model.
    pad_token_id: Option<serde_json::Value>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QuantizationConfig {
    quant_method: Option<String>,
    linear_class: Option<String>,
    quantization_mode: Option<String>,
}

fn bad(msg: impl Into<String>) -> BitNetError {
    BitNetError::Config(msg.into())
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
            if m != "bitnet" {
                return Err(bad(format!("model_type `{m}` is not bitnet")));
            }
        }
        match hf.hidden_act.as_deref() {
            None | Some("relu2") => {}
            Some(act) => {
                return Err(bad(format!(
                    "hidden_act `{act}` is not supported (BitNet b1.58 uses relu2)"
                )))
            }
        }
        if hf.attention_bias == Some(true) {
            return Err(bad(
                "attention_bias = true is not supported (BitNet has no biases)",
            ));
        }
        let rope = hf.rope_parameters.as_ref();
        if let Some(kind) = rope.and_then(|r| r.rope_type.as_deref()) {
            if kind != "default" {
                return Err(bad(format!(
                    "rope_type `{kind}` is not supported (expected default)"
                )));
            }
        }
        let rope_theta = rope
            .and_then(|r| r.rope_theta)
            .or(hf.rope_theta)
            .unwrap_or(500_000.0);
        let heads = hf.num_attention_heads;
        let kv_heads = hf.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(bad(format!(
                "num_attention_heads {heads} is not a positive multiple of num_key_value_heads {kv_heads}"
            )));
        }
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head_dim {head_dim} must be even and positive"
            )));
        }
        for (name, v) in [
            ("vocab_size", hf.vocab_size),
            ("hidden_size", hf.hidden_size),
            ("intermediate_size", hf.intermediate_size),
            ("num_hidden_layers", hf.num_hidden_layers),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} is 0")));
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
        let rms_norm_eps =
            layers::config::positive("rms_norm_eps", hf.rms_norm_eps.unwrap_or(1e-5))?;
        layers::config::positive("rope_theta", rope_theta)?;
        let max_position_embeddings = layers::config::nonzero(
            "max_position_embeddings",
            hf.max_position_embeddings.unwrap_or(4096),
        )?;
        Ok(Config {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(true),
            weight_format: weight_format(hf.quantization_config.as_ref())?,
        })
    }

    /// `microsoft/bitnet-b1.58-2B-4T` (docs/bitnet.md §2).
    pub fn b1_58_2b_4t() -> Self {
        Config {
            vocab_size: 128_256,
            hidden_size: 2560,
            intermediate_size: 6912,
            num_hidden_layers: 30,
            num_attention_heads: 20,
            num_key_value_heads: 5,
            head_dim: 128,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            tie_word_embeddings: true,
            weight_format: WeightFormat::Packed {
                scale: ScaleConvention::Multiply,
            },
        }
    }
}

/// docs/bitnet.md §3: `quantization_config` decides the weight format. Without one, transformers
/// runs a plain float model, which is not what a BitNet checkpoint means: an error here.
fn weight_format(q: Option<&QuantizationConfig>) -> Result<WeightFormat> {
    let q = q.ok_or_else(|| {
        bad("no quantization_config: a BitNet checkpoint declares {\"quant_method\": \"bitnet\", ...}")
    })?;
    if let Some(m) = q.quant_method.as_deref() {
        if m != "bitnet" {
            return Err(bad(format!(
                "quantization_config.quant_method `{m}` is not bitnet"
            )));
        }
    }
    let class = q.linear_class.as_deref().unwrap_or("bitlinear");
    let mode = q.quantization_mode.as_deref().unwrap_or("offline");
    match (class, mode) {
        ("autobitlinear", "online") => Ok(WeightFormat::Master),
        ("autobitlinear", "offline") => Ok(WeightFormat::Packed {
            scale: ScaleConvention::Multiply,
        }),
        ("bitlinear", "offline") => Ok(WeightFormat::Packed {
            scale: ScaleConvention::Divide,
        }),
        ("bitlinear", other) | ("autobitlinear", other) => Err(bad(format!(
            "quantization_config.quantization_mode `{other}` is not supported with linear_class \
             `{class}` (expected offline, or online for autobitlinear)"
        ))),
        (other, _) => Err(bad(format!(
            "quantization_config.linear_class `{other}` is not supported (expected autobitlinear or bitlinear)"
        ))),
    }
}
