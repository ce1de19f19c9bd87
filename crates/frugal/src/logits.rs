//! `frugal logits`: one JSON object per run, the contract every decoder model is checked through:
//! `{"logits_shape": [1, T, V], "logits": [...], "new_tokens": [...]}`.
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use serde_json::{json, Value};

/// RecurrentGemma / Griffin / Hawk checkpoints, in f32 on the CPU.
pub fn griffin(dir: &Path, ids: &[u32], max_new_tokens: usize) -> Result<Value> {
    let model = griffin::load(dir, DType::F32, &Device::Cpu)
        .with_context(|| format!("loading {}", dir.display()))?;
    let (logits, new_tokens) = griffin::generation::greedy(&model, ids, max_new_tokens)?;
    let shape = logits.dims().to_vec();
    let flat: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    Ok(json!({ "logits_shape": shape, "logits": flat, "new_tokens": new_tokens }))
}
