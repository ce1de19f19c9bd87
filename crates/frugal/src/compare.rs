//! `frugal compare`: every architecture and a dense Transformer baseline at one model size, with
//! random weights, over a range of context lengths. Measures in one run prefill and decode
//! tokens/s, cache/state bytes per sequence and weight bytes, prints them with their ratio to the
//! baseline, and plots each against context length (SVG).
//!
//! The baseline is the `transformer` crate: Llama-style (pre-norm RMSNorm, SwiGLU, RoPE, GQA),
//! every layer full causal attention with its own KV cache, on the same kernels, and checked
//! against candle-transformers' Llama.
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

/// The longest context `--contexts` accepts: every model's cache is sized for it up front, and
/// the dense baseline's prefill grows with its square.
pub const MAX_CONTEXT: usize = 1 << 16;

/// The architectures `compare` knows; `Arch::ALL` is the table order (the baseline last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// YOCO with the gated-retention self-decoder.
    #[value(name = "yoco-gret")]
    YocoGret,
    /// YOCO with the sliding-window self-decoder.
    #[value(name = "yoco-swa")]
    YocoSwa,
    /// Griffin: RG-LRU blocks and local attention, 2:1.
    Griffin,
    /// Hawk: RG-LRU blocks only.
    Hawk,
    /// BitNet b1.58: ternary weights, int8 activations.
    Bitnet,
    /// Fastformer: additive attention (an encoder).
    Fastformer,
    /// Smart Bird: learnable sparse attention (an encoder).
    Smartbird,
    /// The dense Llama-style baseline every ratio is taken against (always run).
    Transformer,
}

impl Arch {
    pub const ALL: [Arch; 8] = [
        Arch::YocoGret,
        Arch::YocoSwa,
        Arch::Griffin,
        Arch::Hawk,
        Arch::Bitnet,
        Arch::Fastformer,
        Arch::Smartbird,
        Arch::Transformer,
    ];

    /// The name on the command line, in the table and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Arch::YocoGret => "yoco-gret",
            Arch::YocoSwa => "yoco-swa",
            Arch::Griffin => "griffin",
            Arch::Hawk => "hawk",
            Arch::Bitnet => "bitnet",
            Arch::Fastformer => "fastformer",
            Arch::Smartbird => "smartbird",
            Arch::Transformer => "transformer",
        }
    }
}

/// `--size`: one of [`SIZES`].
/// The dtype the random checkpoint ships its weights in. The models compute in f32 either way;
/// bf16 weights are kept in bf16 and widened inside the kernels (`layers::linear::as_shipped`),
/// as a bf16 checkpoint's are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Weights {
    /// f32 values.
    #[default]
    F32,
    /// Values that are all bf16 (most published checkpoints), loaded in f32.
    Bf16,
}

impl Weights {
    pub fn name(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::Bf16 => "bf16",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Weights::F32 => 4,
            Weights::Bf16 => 2,
        }
    }
}

/// The dtype the dense baseline keeps its KV cache in (`Transformer::new_cache_in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KvCacheDtype {
    /// Exact.
    #[default]
    F32,
    /// Half the bytes, each key and value rounded once (llama.cpp's default).
    F16,
    /// Half the bytes, rounded to bf16.
    Bf16,
}

impl KvCacheDtype {
    pub fn dtype(self) -> DType {
        match self {
            KvCacheDtype::F32 => DType::F32,
            KvCacheDtype::F16 => DType::F16,
            KvCacheDtype::Bf16 => DType::BF16,
        }
    }
}

/// How the models are built beyond their size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub weights: Weights,
    /// BitNet's logits from a 4-bit copy of its output embedding (opt-in, lossy:
    /// `bitnet::Model::quantize_head`).
    pub quantized_head: bool,
    /// BitNet's bf16 output embedding as a plain bf16 tensor instead of its default lossless
    /// 12-bit form (`bitnet::Model::plain_head`).
    pub plain_head: bool,
    /// The dense baseline's KV cache dtype.
    pub kv_cache: KvCacheDtype,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SizeName {
    /// Hidden 128, 4 layers, contexts 128 and 512: a few seconds.
    Tiny,
    /// Hidden 256, 4 layers, contexts 256 to 2048: under a minute on 2 cores.
    Small,
    /// Hidden 512, 8 layers, contexts 512 to 8192: minutes.
    Base,
    /// BitNet b1.58 2B4T's widths (hidden 2560, FFN 6912, 20 / 5 heads, vocabulary 128256), 4
    /// layers (`--layers` for more), context 128: for `--archs bitnet`.
    #[value(name = "2b4t")]
    Widths2b4t,
}

impl SizeName {
    pub fn size(self) -> Size {
        let name = match self {
            SizeName::Tiny => "tiny",
            SizeName::Small => "small",
            SizeName::Base => "base",
            SizeName::Widths2b4t => "2b4t",
        };
        SIZES
            .iter()
            .copied()
            .find(|s| s.name == name)
            .unwrap_or(SIZES[0])
    }
}

/// The shared model size.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// Sliding-window width (YOCO SWA, Griffin's local attention).
    pub window: usize,
    pub decode_steps: usize,
    pub contexts: &'static [usize],
}

pub const SIZES: &[Size] = &[
    Size {
        name: "tiny",
        hidden: 128,
        layers: 4,
        heads: 4,
        kv_heads: 2,
        ffn: 384,
        vocab: 2048,
        window: 128,
        decode_steps: 16,
        contexts: &[128, 512],
    },
    Size {
        name: "small",
        hidden: 256,
        layers: 4,
        heads: 4,
        kv_heads: 2,
        ffn: 768,
        vocab: 4096,
        window: 256,
        decode_steps: 16,
        contexts: &[256, 1024, 2048],
    },
    Size {
        name: "base",
        hidden: 512,
        layers: 8,
        heads: 8,
        kv_heads: 2,
        ffn: 1536,
        vocab: 16_384,
        window: 1024,
        decode_steps: 8,
        contexts: &[512, 2048, 8192],
    },
    Size {
        name: "2b4t",
        hidden: 2560,
        layers: 4,
        heads: 20,
        kv_heads: 5,
        ffn: 6912,
        vocab: 128_256,
        window: 1024,
        decode_steps: 16,
        contexts: &[128],
    },
];

/// One architecture at one context length.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub arch: String,
    pub context: usize,
    pub prefill_tokens_per_s: f64,
    /// `None` for encoders.
    pub decode_tokens_per_s: Option<f64>,
    /// Cache or recurrent state of one sequence after the prompt and the decode steps; `None` for
    /// encoders (they keep nothing).
    pub cache_bytes: Option<usize>,
    /// The random checkpoint's bytes (in `weights`' dtype).
    pub weight_bytes: usize,
    /// The checkpoint's dtype: "f32" or "bf16".
    pub weights: String,
}

enum Built {
    Yoco(Box<yoco::Model>),
    Griffin(Box<griffin::Model>),
    BitNet(Box<bitnet::Model>),
    Fastformer(Box<fastformer::Model>),
    SmartBird(Box<smartbird::Model>),
    /// The baseline and its KV cache's dtype.
    Dense(Box<transformer::Transformer>, DType),
}

/// Builds a model twice over one `VarMap`: the first build creates its variables, which are then
/// filled with N(0, 0.02) noise; the second reads them (so loaders that transform weights at load,
/// such as BitNet's ternarisation, see random values). Returns the model and the weights' bytes.
fn random<M>(
    device: &Device,
    weights: Weights,
    build: impl Fn(VarBuilder) -> Result<M>,
) -> Result<(M, usize)> {
    let map = VarMap::new();
    build(VarBuilder::from_varmap(&map, DType::F32, device))?;
    let mut bytes = 0;
    for var in map.all_vars() {
        let mut noise = Tensor::randn(0f32, 0.02, var.shape(), device)?;
        if weights == Weights::Bf16 {
            noise = noise.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        }
        var.set(&noise)?;
        // The checkpoint's bytes.
        bytes += var.elem_count() * weights.bytes();
    }
    Ok((
        build(VarBuilder::from_varmap(&map, DType::F32, device))?,
        bytes,
    ))
}

fn yoco_config(s: &Size, window: Option<usize>, max_len: usize) -> yoco::Config {
    yoco::Config {
        dim: s.hidden,
        n_layers: s.layers,
        hidden_dim: s.ffn,
        n_self_heads: s.heads,
        n_attn_heads: s.heads,
        n_attn_kv_heads: s.kv_heads,
        vocab_size: s.vocab,
        max_batch_size: 1,
        max_seq_len: max_len as i64,
        model_parallel_size: 1,
        load_checkpoint: false,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        sliding_window: window,
    }
}

fn griffin_config(s: &Size, hawk: bool) -> griffin::Config {
    use griffin::config::BlockType::{Attention, Recurrent};
    griffin::Config {
        vocab_size: s.vocab,
        hidden_size: s.hidden,
        mlp_width: s.ffn,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        num_key_value_heads: 1,
        head_dim: s.hidden / s.heads,
        lru_width: s.hidden,
        attention_window_size: s.window,
        conv1d_width: 4,
        logits_soft_cap: Some(30.0),
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        partial_rotary_factor: 0.5,
        block_types: if hawk {
            vec![Recurrent]
        } else {
            vec![Recurrent, Recurrent, Attention]
        },
        embeddings_scale_by_sqrt_dim: true,
    }
}

/// The dense baseline at the shared size: every layer full causal attention with YOCO's
/// cross-decoder heads (GQA) and its own KV cache; YOCO's RoPE θ and norm ε.
fn transformer_config(s: &Size) -> transformer::Config {
    let mut cfg =
        transformer::Config::dense(s.hidden, s.layers, s.heads, s.kv_heads, s.ffn, s.vocab);
    cfg.rope_theta = 10_000.0;
    cfg.rms_norm_eps = 1e-5;
    cfg
}

fn bitnet_config(s: &Size, max_len: usize) -> bitnet::Config {
    bitnet::Config {
        vocab_size: s.vocab,
        hidden_size: s.hidden,
        intermediate_size: s.ffn,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        num_key_value_heads: s.kv_heads,
        head_dim: s.hidden / s.heads,
        max_position_embeddings: max_len,
        rms_norm_eps: 1e-5,
        rope_theta: 500_000.0,
        tie_word_embeddings: true,
        // Master weights, ternarised (and packed) once at load.
        weight_format: bitnet::WeightFormat::Master,
    }
}

fn fastformer_config(s: &Size, max_len: usize) -> fastformer::Config {
    fastformer::Config {
        hidden_size: s.hidden,
        num_attention_heads: s.heads,
        num_hidden_layers: s.layers,
        intermediate_size: s.ffn,
        max_position_embeddings: max_len,
        vocab_size: s.vocab,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        pooler_type: "weightpooler".into(),
        num_labels: 2,
        pad_token_id: 0,
        share_query_value: true,
        share_layers: false,
    }
}

fn smartbird_config(s: &Size, max_len: usize) -> smartbird::Config {
    smartbird::Config {
        hidden_size: s.hidden,
        num_attention_heads: s.heads,
        num_hidden_layers: s.layers,
        intermediate_size: s.ffn,
        max_position_embeddings: max_len,
        vocab_size: s.vocab,
        layer_norm_eps: 1e-12,
        num_labels: 2,
        pad_token_id: 0,
        sketch_dim: 16,
        keys_per_query: 64,
        sampling: smartbird::Sampling::Gumbel,
        seed: 0,
        include_self: false,
    }
}

/// `arch` at the shared size with random weights, and its weights' bytes.
fn build(
    arch: Arch,
    s: &Size,
    max_len: usize,
    opts: Options,
    device: &Device,
) -> Result<(Built, usize)> {
    let weights = opts.weights;
    Ok(match arch {
        Arch::YocoGret | Arch::YocoSwa => {
            let window = (arch == Arch::YocoSwa).then_some(s.window);
            let cfg = yoco_config(s, window, max_len);
            let (m, b) = random(device, weights, |vb| Ok(yoco::Model::new(&cfg, vb)?))?;
            (Built::Yoco(Box::new(m)), b)
        }
        Arch::Transformer => {
            let cfg = transformer_config(s);
            let (m, b) = random(device, weights, |vb| {
                Ok(transformer::Transformer::new(&cfg, vb)?)
            })?;
            (Built::Dense(Box::new(m), opts.kv_cache.dtype()), b)
        }
        Arch::Griffin | Arch::Hawk => {
            let cfg = griffin_config(s, arch == Arch::Hawk);
            let (m, b) = random(device, weights, |vb| Ok(griffin::Model::new(&cfg, vb)?))?;
            (Built::Griffin(Box::new(m)), b)
        }
        Arch::Bitnet => {
            let cfg = bitnet_config(s, max_len);
            let (mut m, _) = random(device, weights, |vb| Ok(bitnet::Model::new(&cfg, vb)?))?;
            if opts.quantized_head {
                m.quantize_head()?;
            }
            if opts.plain_head {
                m.plain_head()?;
            }
            let w = m.weight_bytes();
            (
                Built::BitNet(Box::new(m)),
                w.packed + w.float + w.quantized_head + w.compact_head,
            )
        }
        Arch::Fastformer => {
            let cfg = fastformer_config(s, max_len);
            let (m, b) = random(device, weights, |vb| Ok(fastformer::Model::new(&cfg, vb)?))?;
            (Built::Fastformer(Box::new(m)), b)
        }
        Arch::Smartbird => {
            let cfg = smartbird_config(s, max_len);
            let (m, b) = random(device, weights, |vb| Ok(smartbird::Model::new(&cfg, vb)?))?;
            (Built::SmartBird(Box::new(m)), b)
        }
    })
}

/// Seconds of `f`.
fn timed<T>(device: &Device, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = f()?;
    // A GPU runs the queued work asynchronously: the time is taken when it is done.
    device.synchronize()?;
    Ok((out, start.elapsed().as_secs_f64()))
}

/// Seconds of `steps` decode steps (`step(i)` for each), run on one pool thread as
/// `layers::generation::generate` runs them.
fn decode_secs(
    device: &Device,
    steps: usize,
    step: impl FnMut(usize) -> Result<()> + Send,
) -> Result<f64> {
    let (_, secs) = timed(device, || {
        layers::pool::on_pool(|| (0..steps).try_for_each(step))
    })?;
    Ok(secs)
}

/// Prefill seconds, decode seconds (decoders) and cache bytes after both.
fn measure(
    model: &Built,
    prompt: &[u32],
    steps: usize,
    device: &Device,
) -> Result<(f64, Option<f64>, Option<usize>)> {
    let cap = prompt.len() + steps;
    let step_ids = |i: usize| [1 + (i as u32 * 31) % 1000];
    Ok(match model {
        Built::Yoco(m) => {
            let mut c = m.new_cache(1, cap)?;
            let (_, p) = timed(device, || {
                Ok(m.prefill(&[prompt], &mut c, yoco::generation::PREFILL_CHUNK)?)
            })?;
            let d = decode_secs(device, steps, |i| {
                m.forward_last(&[step_ids(i)], &mut c)?;
                Ok(())
            })?;
            (p, Some(d), Some(m.cache_bytes(&c).total()))
        }
        Built::Dense(m, kv_dtype) => {
            let mut c = m.new_cache_in(1, cap, *kv_dtype)?;
            let (_, p) = timed(device, || Ok(m.forward_last(&[prompt], &mut c)?))?;
            let d = decode_secs(device, steps, |i| {
                m.forward_last(&[&step_ids(i)], &mut c)?;
                Ok(())
            })?;
            (p, Some(d), Some(c.bytes()))
        }
        Built::Griffin(m) => {
            let mut st = m.new_state(1)?;
            let (_, p) = timed(device, || Ok(m.forward_last(&[prompt], &mut st)?))?;
            let d = decode_secs(device, steps, |i| {
                m.forward_last(&[step_ids(i)], &mut st)?;
                Ok(())
            })?;
            (p, Some(d), Some(st.size_in_bytes()))
        }
        Built::BitNet(m) => {
            let mut c = m.new_cache(1, cap)?;
            let (_, p) = timed(device, || Ok(m.forward_last(&[prompt], &mut c)?))?;
            let d = decode_secs(device, steps, |i| {
                m.forward_last(&[step_ids(i)], &mut c)?;
                Ok(())
            })?;
            (p, Some(d), Some(c.bytes()?))
        }
        Built::Fastformer(m) => {
            let (_, p) = timed(device, || Ok(m.forward(&[prompt.to_vec()])?))?;
            (p, None, None)
        }
        Built::SmartBird(m) => {
            let (_, p) = timed(device, || Ok(m.forward(&[prompt.to_vec()])?))?;
            (p, None, None)
        }
    })
}

/// Runs the comparison; `progress` is told each step (done, total, what).
pub fn run(
    s: &Size,
    contexts: &[usize],
    archs: &[Arch],
    opts: Options,
    device: &Device,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<Record>> {
    if contexts.is_empty() || contexts.contains(&0) {
        bail!("--contexts needs one or more positive lengths");
    }
    let max_len = contexts.iter().max().copied().unwrap_or(1) + s.decode_steps + 1;
    let total = archs.len() * (contexts.len() + 1);
    let mut done = 0;
    let mut records = Vec::new();
    for &arch in archs {
        let name = arch.name();
        progress(done, total, &format!("building {name}"));
        let (model, weight_bytes) = build(arch, s, max_len, opts, device)?;
        // A short warm-up run, so first-call costs stay out of the figures.
        measure(&model, &prompt(16, s.vocab), 1, device)?;
        done += 1;
        for &t in contexts {
            progress(done, total, &format!("{name} at {t} tokens"));
            // The median of a few runs: one run of a short context is at the mercy of the
            // machine's other work.
            let started = Instant::now();
            let mut runs = Vec::new();
            while runs.len() < RUNS
                || (runs.len() < MAX_RUNS && started.elapsed().as_secs_f64() < MIN_SECS)
            {
                runs.push(
                    measure(&model, &prompt(t, s.vocab), s.decode_steps, device)
                        .with_context(|| format!("{name} at context {t}"))?,
                );
            }
            let p = median(runs.iter().map(|r| r.0));
            let d = runs[0].1.map(|_| median(runs.iter().filter_map(|r| r.1)));
            let cache = runs[0].2;
            records.push(Record {
                arch: name.to_string(),
                context: t,
                prefill_tokens_per_s: t as f64 / p,
                decode_tokens_per_s: d.map(|d| s.decode_steps as f64 / d),
                cache_bytes: cache,
                weight_bytes,
                weights: opts.weights.name().to_string(),
            });
            done += 1;
        }
    }
    progress(total, total, "done");
    Ok(records)
}

/// Runs of each (architecture, context) measurement; the table shows their median. Short
/// measurements are repeated until [`MIN_SECS`] have passed (at most [`MAX_RUNS`] runs): a
/// 15 ms prefill measured three times moved by ±30% from one invocation to the next.
const RUNS: usize = 3;
const MAX_RUNS: usize = 15;
const MIN_SECS: f64 = 0.5;

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Token ids 1.. (0 is the encoders' padding id).
fn prompt(t: usize, vocab: usize) -> Vec<u32> {
    (0..t)
        .map(|i| 1 + ((i * 7919) % (vocab - 1)) as u32)
        .collect()
}

fn fmt_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

/// The table: per context, each architecture and its ratio to the baseline (`transformer`).
pub fn table(records: &[Record]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let base = |t: usize| {
        records
            .iter()
            .find(|r| r.arch == "transformer" && r.context == t)
    };
    let ratio = |x: Option<f64>, b: Option<f64>| match (x, b) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "-".into(),
    };
    let mut contexts: Vec<usize> = records.iter().map(|r| r.context).collect();
    contexts.sort_unstable();
    contexts.dedup();
    for t in contexts {
        let b = base(t);
        let _ = writeln!(
            out,
            "context {t} tokens (ratios: to the dense Transformer baseline)"
        );
        let _ = writeln!(
            out,
            "{:<12} {:>12} {:>7} {:>11} {:>7} {:>11} {:>7} {:>10} {:>7}",
            "arch", "prefill t/s", "x", "decode t/s", "x", "cache", "x", "weights", "x"
        );
        for r in records.iter().filter(|r| r.context == t) {
            let _ = writeln!(
                out,
                "{:<12} {:>12.0} {:>7} {:>11} {:>7} {:>11} {:>7} {:>10} {:>7}",
                r.arch,
                r.prefill_tokens_per_s,
                ratio(
                    Some(r.prefill_tokens_per_s),
                    b.map(|b| b.prefill_tokens_per_s)
                ),
                r.decode_tokens_per_s
                    .map_or("-".into(), |d| format!("{d:.1}")),
                ratio(r.decode_tokens_per_s, b.and_then(|b| b.decode_tokens_per_s)),
                r.cache_bytes.map_or("none".into(), fmt_bytes),
                // Smaller is better for bytes: the ratio says how many times less.
                ratio(
                    b.and_then(|b| b.cache_bytes).map(|x| x as f64),
                    r.cache_bytes.map(|x| x as f64)
                ),
                fmt_bytes(r.weight_bytes),
                ratio(
                    b.map(|b| b.weight_bytes as f64),
                    Some(r.weight_bytes as f64)
                ),
            );
        }
        let _ = writeln!(out);
    }
    out.push_str(
        "prefill/decode x: times faster than the baseline; cache/weights x: times smaller.\n\
         Encoders (fastformer, smartbird) encode the whole context once and keep no cache.\n",
    );
    out
}
