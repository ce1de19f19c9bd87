//! Reading what a checkpoint directory holds, and the command-line inputs of `logits`/`classify`.
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The architectures of checkpoints frugal reads: `config.json`'s `model_type`, or `--arch`
/// where the config does not name one (YOCO's, Fastformer's and Smart Bird's do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArch {
    /// RecurrentGemma (HF `recurrent_gemma`): the `griffin` crate.
    #[value(name = "recurrent_gemma")]
    RecurrentGemma,
    /// Griffin: the `griffin` crate.
    Griffin,
    /// Hawk: the `griffin` crate, every block recurrent.
    Hawk,
    /// BitNet b1.58: the `bitnet` crate.
    Bitnet,
    /// YOCO (the official code's config.json): the `yoco` crate.
    Yoco,
    /// Fastformer (the official code's config.json): the `fastformer` crate.
    Fastformer,
    /// Smart Bird (frugal's own layout): the `smartbird` crate.
    Smartbird,
}

impl ModelArch {
    /// Every one, for messages.
    fn names() -> String {
        use clap::ValueEnum;
        ModelArch::value_variants()
            .iter()
            .filter_map(|a| a.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Griffin, Hawk and RecurrentGemma checkpoints all load through the `griffin` crate.
    pub fn is_griffin(self) -> bool {
        matches!(
            self,
            ModelArch::RecurrentGemma | ModelArch::Griffin | ModelArch::Hawk
        )
    }
}

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
pub fn architecture(dir: &Path, arch: Option<ModelArch>) -> Result<ModelArch> {
    if !dir.is_dir() {
        bail!("--model {}: no such directory", dir.display());
    }
    if let Some(a) = arch {
        return Ok(a);
    }
    let name = {
        {
            let path = dir.join("config.json");
            let config = layers::files::read_json(&path)
                .with_context(|| format!("reading {} (or pass --arch)", path.display()))?;
            match config.get("model_type").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None => bail!("{} has no `model_type`: pass --arch NAME", path.display()),
            }
        }
    };
    <ModelArch as clap::ValueEnum>::from_str(&name, false).map_err(|_| {
        anyhow::anyhow!(
            "unknown architecture `{name}`; known: {}",
            ModelArch::names()
        )
    })
}
