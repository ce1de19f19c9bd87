//! `frugal generate`: text from a checkpoint directory (config.json, safetensors, tokenizer.json)
//! or a Hugging Face repo id already in the local HF cache, streamed as it comes. Greedy at
//! temperature 0; otherwise temperature, top-k and top-p sampling from a seeded generator. Stops
//! at the checkpoint's EOS token(s) or after `max_tokens`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};

/// Sampling settings.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
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

/// The HF hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn hf_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) => hf_hub::Cache::new(PathBuf::from(p)),
        None => hf_hub::Cache::from_env(),
    }
}

/// `model` as a directory, or as a repo id in the local HF cache (its `main` snapshot).
pub fn resolve_model(model: &str) -> Result<PathBuf> {
    let dir = Path::new(model);
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    let cache = hf_cache();
    if model.contains('/') && !model.starts_with('/') && !model.starts_with('.') {
        if let Some(config) = cache.model(model.to_string()).get("config.json") {
            if let Some(snapshot) = config.parent() {
                return Ok(snapshot.to_path_buf());
            }
        }
    }
    bail!(
        "--model {model}: no such directory, and no Hugging Face cache entry for it under {} \
         (looked for models--{}/refs/main and its snapshot's config.json). Pass a checkpoint \
         directory, or fetch the repo first, e.g. `huggingface-cli download {model}` (the cache \
         follows HF_HUB_CACHE or HF_HOME).",
        cache.path().display(),
        model.replace('/', "--")
    )
}

/// The EOS ids a checkpoint declares: `eos_token_id` (a number or a list) in config.json or
/// generation_config.json.
fn eos_ids(dir: &Path) -> Vec<u32> {
    let mut ids = Vec::new();
    for file in ["config.json", "generation_config.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match &json["eos_token_id"] {
            serde_json::Value::Number(n) => ids.extend(n.as_u64().map(|x| x as u32)),
            serde_json::Value::Array(a) => {
                ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|x| x as u32))
            }
            _ => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
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
        return Ok(kernels::tokens::argmax(&v) as u32);
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    if let Some(k) = s.top_k {
        order.truncate(k.max(1));
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
pub fn generate(
    model: &str,
    arch: Option<&str>,
    prompt: &str,
    max_tokens: usize,
    sampling: &Sampling,
    out: &mut impl Write,
) -> Result<Vec<u32>> {
    let dir = resolve_model(model)?;
    let tokenizer_path = dir.join("tokenizer.json");
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
    let capacity = ids.len() + max_tokens + 1;
    let load = |what: &str| format!("loading {} ({what})", dir.display());
    let mut decoder: Box<dyn Decoder> = match arch.as_str() {
        "recurrent_gemma" | "griffin" | "hawk" => {
            let m = griffin::load(&dir, DType::F32, &Device::Cpu).with_context(|| load(&arch))?;
            let st = m.new_state(1)?;
            Box::new(Griffin(m, st))
        }
        "bitnet" => {
            let m = bitnet::load(&dir, DType::F32, &Device::Cpu).with_context(|| load(&arch))?;
            let cap = capacity.min(m.config().max_position_embeddings);
            let c = m.new_cache(1, cap)?;
            Box::new(BitNet(m, c))
        }
        "yoco" => {
            let m = yoco::load(&dir, &Device::Cpu).with_context(|| load(&arch))?;
            let c = m.new_cache(1, capacity)?;
            Box::new(Yoco(m, c))
        }
        other => bail!("`frugal generate` needs a decoder (recurrent_gemma, bitnet, yoco); `{other}` is not one"),
    };
    let eos = eos_ids(&dir);
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
