//! `frugal logits` and `frugal classify`: one JSON object per run, the contract every model is
//! checked through: `{"logits_shape": [1, T, V], "logits": [...], "new_tokens": [...]}` for
//! decoders, `{"logits_shape": [B, C], "logits": [...]}` for encoders.
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use serde_json::{json, Value};

use crate::DTypeArg;

/// The logits as a flat list for JSON, which has no NaN or infinity (serde would write `null`):
/// a non-finite value is an error. The models check each layer's output, so this only catches
/// what they could not attribute to a layer.
fn finite_values(logits: &candle_core::Tensor) -> Result<Vec<f32>> {
    let flat: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "the logits hold a non-finite value ({}) at flat index {i}",
            flat[i]
        );
    }
    Ok(flat)
}

/// This process's peak resident memory (`VmHWM`), where the OS reports it.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Times the load and the run of `logits`, and reports them (with peak memory) on stderr.
#[derive(Debug)]
pub struct Timings {
    start: std::time::Instant,
    load_secs: Option<f64>,
}

impl Timings {
    pub fn start() -> Self {
        Timings {
            start: std::time::Instant::now(),
            load_secs: None,
        }
    }

    pub fn loaded(&mut self) {
        self.load_secs = Some(self.start.elapsed().as_secs_f64());
    }

    /// `load: S s; run: S s (T prompt tokens, N new tokens); peak memory: B bytes`.
    pub fn report(&self, prompt_tokens: usize, new_tokens: usize) {
        let load = self.load_secs.unwrap_or(0.0);
        let run = self.start.elapsed().as_secs_f64() - load;
        eprintln!(
            "load: {load:.3} s; run: {run:.3} s ({prompt_tokens} prompt tokens, {new_tokens} new tokens); peak memory: {} bytes",
            peak_memory_bytes().map_or("unknown".into(), |b| b.to_string())
        );
    }
}

/// An error unless `dtype` is f32: `arch` is checked in f32 only.
pub fn f32_only(dtype: DTypeArg, arch: &str) -> Result<()> {
    if dtype != DTypeArg::F32 {
        anyhow::bail!("--dtype {dtype:?}: {arch} runs in f32 only");
    }
    Ok(())
}

/// RecurrentGemma / Griffin / Hawk checkpoints, in `dtype` (f32 or bf16) on `device`.
pub fn griffin(
    dir: &Path,
    ids: &[u32],
    max_new_tokens: usize,
    dtype: DTypeArg,
    device: &Device,
    timings: &mut Timings,
) -> Result<Value> {
    let model = griffin::load(dir, dtype.dtype(), device)
        .with_context(|| format!("loading {}", dir.display()))?;
    timings.loaded();
    let (logits, new_tokens) = griffin::generation::greedy(&model, ids, max_new_tokens)?;
    let shape = logits.dims().to_vec();
    let flat = finite_values(&logits)?;
    Ok(json!({ "logits_shape": shape, "logits": flat, "new_tokens": new_tokens }))
}

/// BitNet b1.58 checkpoints (packed, master or legacy, from `quantization_config`), in `dtype`
/// (f32 or bf16) on `device`.
pub fn bitnet(
    dir: &Path,
    ids: &[u32],
    max_new_tokens: usize,
    dtype: DTypeArg,
    device: &Device,
    timings: &mut Timings,
) -> Result<Value> {
    let model = bitnet::load(dir, dtype.dtype(), device)
        .with_context(|| format!("loading {}", dir.display()))?;
    timings.loaded();
    let (logits, new_tokens) = bitnet::generation::greedy(&model, ids, max_new_tokens)?;
    let shape = logits.dims().to_vec();
    let flat = finite_values(&logits)?;
    Ok(json!({ "logits_shape": shape, "logits": flat, "new_tokens": new_tokens }))
}

/// YOCO checkpoints (the reference's `config.json` names no architecture: `--arch yoco`), in
/// f32 on `device`. The logits are the parallel pass over the prompt; the new tokens come from the
/// reference's decoding (early-exit prefill, then one token per step).
pub fn yoco(
    dir: &Path,
    ids: &[u32],
    max_new_tokens: usize,
    device: &Device,
    timings: &mut Timings,
) -> Result<Value> {
    let model = yoco::load(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    timings.loaded();
    let mut cache = model.new_cache(1, ids.len())?;
    let logits = model.forward(&[ids], &mut cache)?;
    let (new_tokens, _) = yoco::generation::greedy(&model, ids, max_new_tokens)?;
    let shape = logits.dims().to_vec();
    let flat = finite_values(&logits)?;
    Ok(json!({ "logits_shape": shape, "logits": flat, "new_tokens": new_tokens }))
}

/// Fastformer classifiers (the official code's checkpoints), in f32 on `device`.
pub fn fastformer(dir: &Path, batch: &[Vec<u32>], device: &Device) -> Result<Value> {
    let model =
        fastformer::load(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    let out = model.forward(batch)?;
    let flat = finite_values(&out.logits)?;
    Ok(json!({ "logits_shape": out.logits.dims(), "logits": flat }))
}

/// Smart Bird classifiers (our own checkpoint layout: see the `smartbird` crate), in f32 on
/// `device`, with the sampling the checkpoint's config.json sets.
pub fn smartbird(dir: &Path, batch: &[Vec<u32>], device: &Device) -> Result<Value> {
    let model =
        smartbird::load(dir, device).with_context(|| format!("loading {}", dir.display()))?;
    let out = model.forward(batch)?;
    let flat = finite_values(&out.logits)?;
    Ok(json!({ "logits_shape": out.logits.dims(), "logits": flat }))
}
