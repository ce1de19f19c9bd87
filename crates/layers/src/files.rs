//! Opening a checkpoint's files safely: only regular files are read (a FIFO would block the
//! loader forever, a directory or device is never a checkpoint), and names read from inside a
//! checkpoint (an index's shard list, an HF cache's ref) must stay in their directory.
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a non-regular file is, for messages.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a file"
}

/// Checks that `path` (after following symlinks, as the HF cache's snapshots are) is a regular
/// file, without opening it.
pub fn regular_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(Error::NotAFile {
            path: path.to_path_buf(),
            kind: kind(&meta),
        })
    }
}

/// Reads a regular file as text.
pub fn read_to_string(path: &Path) -> Result<String> {
    regular_file(path)?;
    std::fs::read_to_string(path).map_err(|e| io(path, e))
}

/// Reads and parses a regular file of JSON.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `dir/entry`, where `entry` was read from `file`: it must be a relative path of plain names
/// (no root, no `..`, no `.`, not empty), so the result stays inside `dir`.
pub fn join_inside(dir: &Path, entry: &str, file: &Path) -> Result<PathBuf> {
    let rel = Path::new(entry);
    let plain = !entry.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Error::Escapes {
            file: file.to_path_buf(),
            entry: entry.to_string(),
        });
    }
    Ok(dir.join(rel))
}

/// `dir/model.safetensors`, or the shards `dir/model.safetensors.index.json` lists (each once,
/// all present, all regular files inside `dir`).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let json = read_json(&index)?;
        let bad = |message: &str| Error::Json {
            path: index.clone(),
            message: message.to_string(),
        };
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object"))?;
        let mut files = Vec::with_capacity(map.len());
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(&format!("weight_map[`{tensor}`] is not a file name string")))?;
            files.push(join_inside(dir, file, &index)?);
        }
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(bad("`weight_map` lists no shard"));
        }
        for f in &files {
            regular_file(f).map_err(|e| match e {
                Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                    Error::Io {
                        path,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "shard listed in model.safetensors.index.json is missing",
                        ),
                    }
                }
                other => other,
            })?;
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        regular_file(&single)?;
        return Ok(vec![single]);
    }
    Err(io(
        &single,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
        ),
    ))
}
