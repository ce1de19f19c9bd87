//! Loading a YOCO checkpoint directory: `config.json` (the reference's `YOCOArgs` fields) and
//! `model.safetensors` or shards with the reference's state_dict names; weights of any float
//! dtype run in f32.
use std::path::Path;

use candle_core::{DType, Device};

use crate::config::Config;
use crate::error::Result;
use crate::model::Model;

pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let cfg = Config::from_dir(dir)?;
    let files = layers::files::safetensors_files(dir)?;
    // Dtypes, shapes and finiteness checked per tensor (see `layers::weights`).
    let vb = layers::weights::var_builder(&files, DType::F32, device)?;
    Model::new(&cfg, vb)
}
