//! `frugal generate`: text from a checkpoint directory (config.json, safetensors, tokenizer.json)
//! or a Hugging Face repo id (from the local HF cache, or downloaded: see `hub`), streamed as it
//! comes. Greedy at
//! temperature 0; otherwise temperature, top-k and top-p sampling from a seeded generator. Stops
//! at the checkpoint's EOS token(s) or after `max_tokens`.
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, IndexOp, Tensor};

use crate::model_dir::ModelArch;
use crate::DTypeArg;

use layers::generation::Decoder;
pub use layers::generation::Sampling;

struct Griffin(griffin::Model, griffin::State);
struct BitNet(bitnet::Model, bitnet::Cache);
struct Yoco(yoco::Model, yoco::Cache);

impl Decoder for Griffin {
    fn prefill(&mut self, prompt: &[u32]) -> layers::Result<Tensor> {
        Ok(self.0.forward_last(&[prompt], &mut self.1)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> layers::Result<Tensor> {
        Ok(self.0.forward_last(&[[token]], &mut self.1)?.i(0)?)
    }
}

impl Decoder for BitNet {
    fn prefill(&mut self, prompt: &[u32]) -> layers::Result<Tensor> {
        Ok(self.0.forward_last(&[prompt], &mut self.1)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> layers::Result<Tensor> {
        Ok(self.0.forward_last(&[[token]], &mut self.1)?.i(0)?)
    }
}

impl Decoder for Yoco {
    fn prefill(&mut self, prompt: &[u32]) -> layers::Result<Tensor> {
        let chunk = yoco::generation::PREFILL_CHUNK;
        Ok(self.0.prefill(&[prompt], &mut self.1, chunk)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> layers::Result<Tensor> {
        Ok(self.0.forward_last(&[[token]], &mut self.1)?.i(0)?)
    }
}

/// The EOS ids a checkpoint declares: `eos_token_id` (a number or a list) in config.json or
/// generation_config.json. A file that is absent is skipped; one that cannot be read or holds
/// something other than token ids is an error.
fn eos_ids(dir: &Path) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for file in ["config.json", "generation_config.json"] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        let json = layers::files::read_json(&path)?;
        let bad = |v: &serde_json::Value| {
            anyhow::anyhow!("{}: eos_token_id {v} is not a token id", path.display())
        };
        let id = |v: &serde_json::Value| {
            v.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| bad(v))
        };
        match &json["eos_token_id"] {
            serde_json::Value::Null => {}
            serde_json::Value::Array(a) => {
                for v in a {
                    ids.push(id(v)?);
                }
            }
            v => ids.push(id(v)?),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Runs generation, writing text to `out` as it comes; returns the generated ids.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &str,
    offline: bool,
    arch: Option<ModelArch>,
    dtype: DTypeArg,
    device: &Device,
    prompt: &str,
    max_tokens: usize,
    sampling: &Sampling,
    json: bool,
    out: &mut (impl Write + Send),
) -> Result<Vec<u32>> {
    sampling.validate()?;
    let dir = crate::hub::resolve_model(model, offline, &["tokenizer.json"])?;
    let tokenizer_path = dir.join("tokenizer.json");
    layers::files::regular_file(&tokenizer_path)?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", tokenizer_path.display()))?;
    let encoding = tokenizer
        .encode(prompt, true)
        .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
    let ids: Vec<u32> = encoding.get_ids().to_vec();
    if ids.is_empty() {
        bail!("the prompt gives no tokens");
    }
    let arch = crate::model_dir::architecture(&dir, arch)?;
    let eos = eos_ids(&dir)?;
    let load_start = std::time::Instant::now();
    let load = |what: &str| format!("loading {} ({what})", dir.display());
    // Each model's context: positions past it are not computed as the reference would (or not
    // at all). Generation stops there, with a note; a prompt that does not fit is an error.
    let fit = |limit: usize, key: &str| -> Result<(usize, usize)> {
        if ids.len() > limit {
            bail!(
                "the prompt's {} tokens exceed the model's context of {limit} ({key})",
                ids.len()
            );
        }
        let room = limit - ids.len();
        if max_tokens > room {
            eprintln!(
                "note: the model's context is {limit} tokens ({key}): generating at most {room}"
            );
        }
        let max = max_tokens.min(room);
        Ok((max, (ids.len() + max).max(1)))
    };
    let what = format!("{arch:?}");
    let (mut decoder, max_tokens): (Box<dyn Decoder + Send>, usize) = match arch {
        a if a.is_griffin() => {
            let m = griffin::load(&dir, dtype.dtype(), device).with_context(|| load(&what))?;
            let (max, _) = fit(griffin::MAX_POSITIONS, "positions exact for RoPE in f32")?;
            let st = m.new_state(1)?;
            (Box::new(Griffin(m, st)), max)
        }
        ModelArch::Bitnet => {
            let m = bitnet::load(&dir, dtype.dtype(), device).with_context(|| load(&what))?;
            let (max, cap) = fit(m.config().max_position_embeddings, "max_position_embeddings")?;
            let c = m.new_cache(1, cap)?;
            (Box::new(BitNet(m, c)), max)
        }
        ModelArch::Yoco => {
            crate::logits::f32_only(dtype, "yoco")?;
            let m = yoco::load(&dir, device).with_context(|| load(&what))?;
            let limit = usize::try_from(m.config().max_seq_len).unwrap_or(usize::MAX);
            let (max, cap) = fit(limit, "max_seq_len")?;
            let c = m.new_cache(1, cap)?;
            (Box::new(Yoco(m, c)), max)
        }
        other => bail!("`frugal generate` needs a decoder (recurrent_gemma, griffin, hawk, bitnet, yoco); {other:?} is an encoder"),
    };
    let load_secs = load_start.elapsed().as_secs_f64();
    let mut printed = 0;
    let done = layers::generation::generate(
        decoder.as_mut(),
        &ids,
        max_tokens,
        sampling,
        &eos,
        |generated: &[u32]| -> Result<()> {
            // Decode everything so far and print what is new (a token may complete a character).
            let text = tokenizer
                .decode(generated, true)
                .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))?;
            // With --json the text comes once, at the end.
            if !json && text.len() > printed && text.is_char_boundary(printed) {
                write!(out, "{}", &text[printed..])?;
                out.flush()?;
                printed = text.len();
            }
            Ok(())
        },
    )?;
    // No rate without a timed token (a one-token budget decodes nothing after the prompt).
    let rate = |n: usize, secs: f64| (n > 0).then(|| n as f64 / secs.max(1e-9));
    let shown = |r: Option<f64>| {
        r.map_or("no decode steps".to_string(), |r| {
            format!("{r:.1} tokens/s")
        })
    };
    if json {
        let text = tokenizer
            .decode(&done.tokens, true)
            .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))?;
        let record = serde_json::json!({
            "text": text,
            "tokens": done.tokens,
            "stopped_at_eos": done.stopped_at_eos,
            "load_secs": load_secs,
            "prompt_tokens": ids.len(),
            "prompt_secs": done.prompt_secs,
            "prompt_tokens_per_s": rate(ids.len(), done.prompt_secs),
            "generated_tokens": done.tokens.len(),
            "decode_secs": done.decode_secs,
            "decode_steps": done.decode_steps,
            "decode_tokens_per_s": rate(done.decode_steps, done.decode_secs),
        });
        writeln!(out, "{record}")?;
        return Ok(done.tokens);
    }
    writeln!(out)?;
    eprintln!(
        "load: {load_secs:.2} s; prompt: {} tokens in {:.2} s ({}); generated: {} tokens, the last {} decoded in {:.2} s ({})",
        ids.len(),
        done.prompt_secs,
        shown(rate(ids.len(), done.prompt_secs)),
        done.tokens.len(),
        done.decode_steps,
        done.decode_secs,
        shown(rate(done.decode_steps, done.decode_secs))
    );
    Ok(done.tokens)
}
