//! Helpers shared by the bitnet tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// A fixture checkpoint (see fixtures/README.md): `bitnet_packed` or `bitnet_master`.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub struct Golden {
    pub input_ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub new_tokens: Vec<u32>,
    pub step_logits: Vec<f32>,
    pub sequence: Vec<u32>,
    /// One uncached pass over `sequence[..len - 1]` (prompt + all but the last new token).
    pub full_sequence_logits: Vec<f32>,
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    let v = match v.as_array().unwrap().first() {
        Some(first) if first.is_array() => first,
        _ => v,
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn golden(name: &str) -> Golden {
    let text = std::fs::read_to_string(fixture_dir(name).join("golden.json")).unwrap();
    let g: serde_json::Value = serde_json::from_str(&text).unwrap();
    Golden {
        input_ids: ids(&g["input_ids"]),
        logits: floats(&g["logits"]),
        new_tokens: ids(&g["generate"]["new_tokens"]),
        step_logits: floats(&g["generate"]["step_logits"]),
        sequence: ids(&g["generate"]["sequence"]),
        full_sequence_logits: floats(&g["full_sequence_logits"]["logits"]),
    }
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A scratch directory under the target dir, emptied.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
