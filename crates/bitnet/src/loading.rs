//! Loading a BitNet checkpoint directory: `config.json` plus `model.safetensors` or shards listed
//! in `model.safetensors.index.json`. The weight format comes from `quantization_config`.
use std::path::Path;

use candle_core::{DType, Device};

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
    let files = layers::files::safetensors_files(dir)?;
    // Dtypes (packed weights must be stored as U8, floats as floats), shapes and finiteness
    // checked per tensor (see `layers::weights`).
    let vb = layers::weights::var_builder(&files, dtype, device)?;
    Model::new(&cfg, vb)
}
