//! Finding a checkpoint's safetensors files, shared by every model crate's loader.
use std::path::{Path, PathBuf};

/// A checkpoint file that could not be found or read: its path and why.
#[derive(Debug)]
pub struct CheckpointError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for CheckpointError {}

fn err(path: &Path, kind: std::io::ErrorKind, msg: impl Into<String>) -> CheckpointError {
    CheckpointError {
        path: path.to_path_buf(),
        source: std::io::Error::new(kind, msg.into()),
    }
}

/// `dir/model.safetensors`, or the shards `dir/model.safetensors.index.json` lists (each once,
/// all present).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| CheckpointError {
            path: index.clone(),
            source,
        })?;
        let invalid = std::io::ErrorKind::InvalidData;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(&index, invalid, e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| err(&index, invalid, "no `weight_map` object"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(err(
                missing,
                std::io::ErrorKind::NotFound,
                "shard listed in the index is missing",
            ));
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(err(
        &single,
        std::io::ErrorKind::NotFound,
        "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
    ))
}
