//! Loading a RecurrentGemma checkpoint directory: `config.json` plus `model.safetensors`, or
//! shards listed in `model.safetensors.index.json`. Weights stored in f32, bf16 or f16 are
//! converted once to the dtype the model runs in (f32 or bf16).
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::Config;
use crate::error::{GriffinError, Result};
use crate::model::Model;

/// The safetensors files of a checkpoint directory (see [`layers::files::safetensors_files`]).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    layers::files::safetensors_files(dir)
}

/// Loads config and weights from `dir`, to run in `dtype` (f32 or bf16) on `device`.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Model> {
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Err(GriffinError::Input(format!(
            "run dtype {dtype:?} is not supported: use f32 or bf16"
        )));
    }
    let cfg = Config::from_dir(dir)?;
    let files = safetensors_files(dir)?;
    // Dtypes, shapes and finiteness checked per tensor (see `layers::weights`).
    let vb = layers::weights::var_builder(&files, dtype, device)?;
    Model::new(&cfg, vb)
}
