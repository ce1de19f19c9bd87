//! Loading a RecurrentGemma checkpoint directory: `config.json` plus `model.safetensors`, or
//! shards listed in `model.safetensors.index.json`. Weights stored in f32, bf16 or f16 are
//! converted once to the dtype the model runs in (f32 or bf16).
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::Config;
use crate::error::{GriffinError, Result};
use crate::model::Model;

/// The safetensors files of a checkpoint directory.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| GriffinError::Io {
            path: index.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| GriffinError::Json {
                path: index.clone(),
                message: e.to_string(),
            })?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| GriffinError::Json {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(GriffinError::Io {
                path: missing.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "shard listed in the index is missing",
                ),
            });
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(GriffinError::Io {
        path: single,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
        ),
    })
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
    // SAFETY: the files are memory-mapped read-only; modifying them while loaded is the caller's
    // responsibility, as with every mmap-based loader.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
        .map_err(GriffinError::Weights)?;
    Model::new(&cfg, vb)
}
