//! `frugal generate`: text from a checkpoint directory (config.json, safetensors, tokenizer.json)
//! or a Hugging Face repo id (from the local HF cache, or downloaded: see `hub`), streamed as it
//! comes. Greedy at
//! temperature 0; otherwise temperature, top-k and top-p sampling from a seeded generator. Stops
//! at the checkpoint's EOS token(s) or after `max_tokens`.
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};

use crate::model_dir::ModelArch;
use crate::DTypeArg;

/// Sampling settings.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Sampling {
    /// Refuses settings outside their domain before any work starts.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            bail!("--temperature {t}: must be a finite number ≥ 0 (0 is greedy)");
        }
        if self.top_k == Some(0) {
            bail!("--top-k 0 keeps no token: give at least 1, or leave it out for no limit");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("--top-p {p}: must be in (0, 1]");
            }
        }
        Ok(())
    }
}

/// A model that decodes one token at a time from its cache or state.
trait Decoder {
    /// The last prompt position's logits.
    fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor>;
    fn step(&mut self, token: u32) -> Result<Tensor>;
}

struct Griffin(griffin::Model, griffin::State);
struct BitNet(bitnet::Model, bitnet::Cache);
struct Yoco(yoco::Model, yoco::Cache);

impl Decoder for Griffin {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor> {
        Ok(self.0.forward_last(&[prompt], &mut self.1)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> Result<Tensor> {
        Ok(self.0.forward_last(&[[token]], &mut self.1)?.i(0)?)
    }
}

impl Decoder for BitNet {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor> {
        Ok(self.0.forward_last(&[prompt], &mut self.1)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> Result<Tensor> {
        Ok(self.0.forward_last(&[[token]], &mut self.1)?.i(0)?)
    }
}

impl Decoder for Yoco {
    fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor> {
        let chunk = yoco::generation::PREFILL_CHUNK;
        Ok(self.0.prefill(&[prompt], &mut self.1, chunk)?.i(0)?)
    }
    fn step(&mut self, token: u32) -> Result<Tensor> {
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

/// splitmix64: the sampler's random numbers, reproducible from `seed`.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks the next token: arg-max at temperature 0, else a draw from the tempered distribution
/// restricted to the top-k and then to the smallest top-p mass.
fn sample(logits: &Tensor, s: &Sampling, rng: &mut Rng) -> Result<u32> {
    let v: Vec<f32> = logits.to_dtype(DType::F32)?.to_vec1()?;
    if v.is_empty() {
        bail!("the model returned no logits");
    }
    if s.temperature <= 0.0 {
        return Ok(layers::tokens::argmax(&v) as u32);
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    if let Some(k) = s.top_k {
        order.truncate(k);
    }
    let max = f64::from(v[order[0]]);
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(v[i]) - max) / s.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = s.top_p {
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p;
                mass >= top_p
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&i, &p) in order.iter().zip(&probs) {
        if u < p {
            return Ok(i as u32);
        }
        u -= p;
    }
    Ok(order[order.len() - 1] as u32)
}

/// Runs generation, writing text to `out` as it comes; returns the generated ids.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &str,
    offline: bool,
    arch: Option<ModelArch>,
    dtype: DTypeArg,
    prompt: &str,
    max_tokens: usize,
    sampling: &Sampling,
    out: &mut impl Write,
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
    let (mut decoder, max_tokens): (Box<dyn Decoder>, usize) = match arch {
        a if a.is_griffin() => {
            let m = griffin::load(&dir, dtype.dtype(), &Device::Cpu).with_context(|| load(&what))?;
            let (max, _) = fit(griffin::MAX_POSITIONS, "positions exact for RoPE in f32")?;
            let st = m.new_state(1)?;
            (Box::new(Griffin(m, st)), max)
        }
        ModelArch::Bitnet => {
            let m = bitnet::load(&dir, dtype.dtype(), &Device::Cpu).with_context(|| load(&what))?;
            let (max, cap) = fit(m.config().max_position_embeddings, "max_position_embeddings")?;
            let c = m.new_cache(1, cap)?;
            (Box::new(BitNet(m, c)), max)
        }
        ModelArch::Yoco => {
            crate::logits::f32_only(dtype, "yoco")?;
            let m = yoco::load(&dir, &Device::Cpu).with_context(|| load(&what))?;
            let limit = usize::try_from(m.config().max_seq_len).unwrap_or(usize::MAX);
            let (max, cap) = fit(limit, "max_seq_len")?;
            let c = m.new_cache(1, cap)?;
            (Box::new(Yoco(m, c)), max)
        }
        other => bail!("`frugal generate` needs a decoder (recurrent_gemma, griffin, hawk, bitnet, yoco); {other:?} is an encoder"),
    };
    let mut rng = Rng(sampling.seed);
    let start = Instant::now();
    let mut logits = decoder.prefill(&ids)?;
    let mut generated = Vec::new();
    let mut printed = 0;
    for _ in 0..max_tokens {
        let next = sample(&logits, sampling, &mut rng)?;
        if eos.contains(&next) {
            break;
        }
        generated.push(next);
        // Decode everything so far and print what is new (a token may complete a character).
        let text = tokenizer
            .decode(&generated, true)
            .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))?;
        if text.len() > printed && text.is_char_boundary(printed) {
            write!(out, "{}", &text[printed..])?;
            out.flush()?;
            printed = text.len();
        }
        if generated.len() < max_tokens {
            logits = decoder.step(next)?;
        }
    }
    writeln!(out)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} prompt tokens, {} generated in {:.2} s ({:.1} tokens/s)",
        ids.len(),
        generated.len(),
        secs,
        generated.len() as f64 / secs.max(1e-9)
    );
    Ok(generated)
}
