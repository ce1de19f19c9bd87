//! Loading a BitNet checkpoint directory: `config.json` plus `model.safetensors` or shards listed
//! in `model.safetensors.index.json`. The weight format comes from `quantization_config`.
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::Config;
use crate::error::{BitNetError, Result};
use crate::model::Model;

/// Loads config and weights from `dir`, to run in `dtype` (f32 or bf16) on `device`.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Model> {
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(BitNetError::Input(format!(
            "run dtype {dtype:?} is not supported: use f32 or bf16 (relu² overflows f16)"
        )));
    }
    let cfg = Config::from_dir(dir)?;
    let files = kernels::checkpoint::safetensors_files(dir).map_err(|e| BitNetError::Io {
        path: e.path,
        source: e.source,
    })?;
    // SAFETY: the files are memory-mapped read-only; modifying them while loaded is the caller's
    // responsibility, as with every mmap-based loader.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
        .map_err(|e| BitNetError::Weights(e.to_string()))?;
    Model::new(&cfg, vb)
}
