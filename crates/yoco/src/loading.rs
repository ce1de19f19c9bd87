//! Loading a YOCO checkpoint directory: `config.json` (the reference's `YOCOArgs` fields) and
//! `model.safetensors` or shards with the reference's state_dict names; weights of any float
//! dtype run in f32.
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::Config;
use crate::error::{Result, YocoError};
use crate::model::Model;

pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let cfg = Config::from_dir(dir)?;
    let files = kernels::checkpoint::safetensors_files(dir).map_err(|e| YocoError::Io {
        path: e.path,
        source: e.source,
    })?;
    // SAFETY: the files are memory-mapped read-only; modifying them while loaded is the caller's
    // responsibility, as with every mmap-based loader.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device) }
        .map_err(|e| YocoError::Weights(e.to_string()))?;
    Model::new(&cfg, vb)
}
