//! Reading what a checkpoint directory holds, and the command-line inputs of `logits`/`classify`.
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Architectures frugal knows, by `config.json` `model_type` (or `--arch`), with the crate that
/// implements each.
const ARCHITECTURES: &[(&str, &str)] = &[
    ("recurrent_gemma", "griffin"),
    ("griffin", "griffin"),
    ("hawk", "griffin"),
    ("bitnet", "bitnet"),
    ("yoco", "yoco"),
    ("fastformer", "fastformer"),
    ("smartbird", "smartbird"),
];

/// `5,9,2` -> ids. Empty input and non-numbers are errors.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() {
        bail!("--input-ids is empty: give comma-separated token ids, e.g. 5,9,2");
    }
    s.split(',')
        .map(|t| {
            let t = t.trim();
            t.parse::<u32>().with_context(|| {
                format!("--input-ids: `{t}` is not a token id (a non-negative integer)")
            })
        })
        .collect()
}

/// `1,2,3;4,5,0` -> sequences of equal length.
pub fn parse_batch(s: &str) -> Result<Vec<Vec<u32>>> {
    let batch: Vec<Vec<u32>> = s.split(';').map(parse_ids).collect::<Result<_>>()?;
    if let Some(bad) = batch.iter().find(|seq| seq.len() != batch[0].len()) {
        bail!(
            "--input-ids: sequences must have one length (pad them), found {} and {}",
            batch[0].len(),
            bad.len()
        );
    }
    Ok(batch)
}

/// The architecture of a checkpoint: `--arch`, else `config.json`'s `model_type`.
pub fn architecture(dir: &Path, arch: Option<&str>) -> Result<String> {
    if !dir.is_dir() {
        bail!("--model {}: no such directory", dir.display());
    }
    let name = match arch {
        Some(a) => a.to_string(),
        None => {
            let path = dir.join("config.json");
            let config = layers::files::read_json(&path)
                .with_context(|| format!("reading {} (or pass --arch)", path.display()))?;
            match config.get("model_type").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None => bail!("{} has no `model_type`: pass --arch NAME", path.display()),
            }
        }
    };
    if !ARCHITECTURES.iter().any(|(a, _)| *a == name) {
        let known: Vec<_> = ARCHITECTURES.iter().map(|(a, _)| *a).collect();
        bail!("unknown architecture `{name}`; known: {}", known.join(", "));
    }
    Ok(name)
}

/// No model crate implements an architecture yet: say so, and which crate will.
pub fn unsupported(arch: &str, command: &str) -> Result<()> {
    let krate = ARCHITECTURES
        .iter()
        .find(|(a, _)| *a == arch)
        .map_or("?", |(_, c)| *c);
    bail!("`frugal {command}` does not support `{arch}` yet: the `{krate}` crate has no model in this build")
}
