//! `frugal`: run frugal's models from the command line.
//!
//! - `frugal` / `frugal compare [--size S] [--contexts 256,1024] [--archs a,b] [--json]`: every
//!   architecture against a dense Transformer at one size, random weights: a table and an SVG.
//! - `frugal generate --model DIR|REPO --prompt "..."`: streamed text from a checkpoint.
//! - `frugal info`: what this build has (CPU features, GPU and driver, kernels).
//! - `frugal logits --model DIR --input-ids 5,9,2 [--max-new-tokens N] [--arch NAME]`: one JSON
//!   object `{"logits_shape": [1, T, V], "logits": [...], "new_tokens": [...]}` (the contract every
//!   decoder model is checked through).
//! - `frugal classify --model DIR --input-ids "1,2,3;4,5,0" [--arch NAME]`: encoders,
//!   `{"logits_shape": [B, C], "logits": [...]}`.
//!
//! Errors go to stderr with a non-zero exit.
mod compare;
mod generate;
mod hub;
mod info;
mod logits;
mod model_dir;
mod plot;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use candle_core::Device;
use clap::{Parser, Subcommand, ValueEnum};

use compare::{Arch, KvCacheDtype, Options, SizeName, Weights};
use model_dir::ModelArch;

#[derive(Parser)]
#[command(
    name = "frugal",
    version,
    about = "Efficient language-model architectures in Rust"
)]
struct Cli {
    /// Without a command: `compare` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where a model runs: `cpu`, `cuda` (device 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceArg {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceArg::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: cpu, cuda or cuda:N")),
        }
    }
}

/// The dtype a model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    F32,
    /// Griffin / RecurrentGemma and BitNet only.
    Bf16,
    /// Refused by every model so far (BitNet's relu² overflows it; the others are checked in f32
    /// and bf16 only).
    F16,
}

impl DTypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DTypeArg::F32 => candle_core::DType::F32,
            DTypeArg::Bf16 => candle_core::DType::BF16,
            DTypeArg::F16 => candle_core::DType::F16,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Every architecture and a dense Transformer baseline at one model size, random weights:
    /// prefill and decode tokens/s, cache and weight bytes, and their ratios to the baseline,
    /// over context lengths. Prints a table and writes an SVG plot.
    Compare {
        /// Model size.
        #[arg(long, value_enum, default_value_t = SizeName::Small)]
        size: SizeName,
        /// Layers, instead of the size's.
        #[arg(long)]
        layers: Option<usize>,
        /// Context lengths, comma-separated, each in 1..=65536 (default: the size's).
        #[arg(long)]
        contexts: Option<String>,
        /// Architectures, comma-separated (default: all); the baseline always runs.
        #[arg(long, value_enum, value_delimiter = ',')]
        archs: Vec<Arch>,
        /// Where the models run: cpu, cuda (device 0) or cuda:N (CUDA needs the `cuda` build).
        #[arg(long, default_value = "cpu")]
        device: DeviceArg,
        /// The dtype of the random checkpoint's weights: f32, or bf16 values (kept in bf16 and
        /// widened to f32 inside the kernels, as a bf16 checkpoint's are).
        #[arg(long, value_enum, default_value_t = Weights::F32)]
        weights: Weights,
        /// BitNet's logits from a 4-bit copy of its output embedding (opt-in and lossy: about
        /// 10% of the largest logit on the HF fixtures; see README, "BitNet against TQ2_0").
        #[arg(long, conflicts_with = "plain_head")]
        quantized_head: bool,
        /// BitNet's bf16 output embedding as a plain bf16 tensor, 2 bytes a weight read per
        /// token, instead of the lossless 12-bit form it is held in by default (1.5 bytes; the
        /// same logits): for comparing the two. No effect with f32 weights.
        #[arg(long)]
        plain_head: bool,
        /// The dense baseline's KV cache: f32, or f16 / bf16 (half the bytes, each key and value
        /// rounded once; llama.cpp's default is f16).
        #[arg(long, value_enum, default_value_t = KvCacheDtype::F32)]
        kv_cache: KvCacheDtype,
        /// Where to write the SVG plot.
        #[arg(long, default_value = "frugal-compare.svg")]
        plot: PathBuf,
        /// Print the records as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Skip the dense baseline (no ratios): for one architecture at a size where the
        /// baseline's f32 weights would cost minutes or gigabytes.
        #[arg(long)]
        no_baseline: bool,
    },
    /// Generate text from a decoder checkpoint (RecurrentGemma / Griffin / Hawk, BitNet b1.58,
    /// YOCO), streaming it as it comes.
    Generate {
        /// A checkpoint directory (config.json, safetensors, tokenizer.json), or a Hugging Face
        /// repo id (org/name): taken from the local HF cache, or downloaded into it.
        #[arg(long)]
        model: String,
        /// Never download: only directories and the local HF cache (also HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
        #[arg(long)]
        prompt: String,
        /// Tokens to generate at most (EOS, or the model's context, stops earlier).
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// 0: greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        #[arg(long)]
        top_k: Option<usize>,
        #[arg(long)]
        top_p: Option<f64>,
        #[arg(long, default_value_t = 299_792_458)]
        seed: u64,
        /// Architecture, where config.json does not say (e.g. yoco).
        #[arg(long, value_enum)]
        arch: Option<ModelArch>,
        /// The dtype the model computes in.
        #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
        dtype: DTypeArg,
        /// Where the model runs: cpu, cuda (device 0) or cuda:N (CUDA needs the `cuda` build).
        #[arg(long, default_value = "cpu")]
        device: DeviceArg,
        /// Print one JSON object at the end (text, tokens, load time, prompt and decode rates)
        /// instead of streaming the text.
        #[arg(long)]
        json: bool,
    },
    /// What this build has: CPU features, GPU and driver, compiled kernels.
    Info,
    /// Full-prompt logits of a decoder checkpoint, and greedy tokens decoded with its cache.
    Logits {
        /// Checkpoint directory (config.json and safetensors), or a Hugging Face repo id.
        #[arg(long)]
        model: String,
        /// Never download: only directories and the local HF cache (also HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
        /// Prompt token ids, comma-separated: 5,9,2
        #[arg(long)]
        input_ids: String,
        /// Greedy tokens to generate after the prompt, using the model's cache.
        #[arg(long, default_value_t = 0)]
        max_new_tokens: usize,
        /// Architecture, where config.json does not say (e.g. yoco).
        #[arg(long, value_enum)]
        arch: Option<ModelArch>,
        /// The dtype the model computes in (the logits are printed as f32).
        #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
        dtype: DTypeArg,
        /// Where the model runs: cpu, cuda (device 0) or cuda:N (CUDA needs the `cuda` build).
        #[arg(long, default_value = "cpu")]
        device: DeviceArg,
        /// Print load time, run time and peak memory to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Class logits of an encoder checkpoint for a batch of sequences.
    Classify {
        /// Checkpoint directory (config.json and weights), or a Hugging Face repo id.
        #[arg(long)]
        model: String,
        /// Never download: only directories and the local HF cache (also HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
        /// Sequences separated by ';', ids by ',': "1,2,3;4,5,0"
        #[arg(long)]
        input_ids: String,
        /// Architecture, where config.json does not say.
        #[arg(long, value_enum)]
        arch: Option<ModelArch>,
        /// Where the model runs: cpu, cuda (device 0) or cuda:N (CUDA needs the `cuda` build).
        #[arg(long, default_value = "cpu")]
        device: DeviceArg,
    },
}

/// The candle device `--device` names, or a clear error: no CUDA in this build, no driver, no
/// such device.
fn device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda(n) => cuda_device(n),
    }
}

/// "CPU" or "cuda:N".
fn device_label(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "CPU".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<Device> {
    // Probe first: the driver's own error for a missing GPU is a bare status code.
    kernels::gpu::context(n).map_err(|e| anyhow::anyhow!("--device cuda:{n}: {e}"))?;
    Device::new_cuda(n).map_err(|e| anyhow::anyhow!("--device cuda:{n}: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<Device> {
    anyhow::bail!(
        "--device cuda:{n}: this build of frugal has no CUDA backend; build it with \
         `cargo build --release -p frugal --no-default-features --features cuda` (README, \
         \"On a GPU\")"
    )
}

fn parse_contexts(contexts: Option<&str>, default: &[usize]) -> Result<Vec<usize>> {
    let Some(c) = contexts else {
        return Ok(default.to_vec());
    };
    c.split(',')
        .map(|x| {
            let n: usize = x
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--contexts: `{x}` is not a length"))?;
            if n == 0 || n > compare::MAX_CONTEXT {
                anyhow::bail!(
                    "--contexts: {n} is outside 1..={} (the longest context compare measures: \
                     each model's cache is sized for it, with random weights)",
                    compare::MAX_CONTEXT
                );
            }
            Ok(n)
        })
        .collect()
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(1);
    let style = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
    )
    .ok()?;
    bar.set_style(style.progress_chars("#>-"));
    Some(bar)
}

#[allow(clippy::too_many_arguments)]
fn run_compare(
    size: SizeName,
    layers: Option<usize>,
    contexts: Option<&str>,
    archs: &[Arch],
    device_arg: DeviceArg,
    opts: Options,
    plot: &std::path::Path,
    json: bool,
    no_baseline: bool,
) -> Result<()> {
    let dev = device(device_arg)?;
    let mut s = size.size();
    if let Some(layers) = layers {
        anyhow::ensure!(
            (1..=256).contains(&layers),
            "--layers: {layers} is outside 1..=256"
        );
        s.layers = layers;
    }
    let contexts = parse_contexts(contexts, s.contexts)?;
    // The plot is written after minutes of measuring: a path that cannot be written is found now.
    plot::check_writable(plot)?;
    let mut archs: Vec<Arch> = if archs.is_empty() {
        Arch::ALL.to_vec()
    } else {
        archs.to_vec()
    };
    // The baseline every ratio is taken against, once, last.
    archs.retain(|&a| a != Arch::Transformer);
    archs.dedup();
    if !no_baseline {
        archs.push(Arch::Transformer);
    }
    anyhow::ensure!(
        !archs.is_empty(),
        "--no-baseline with only the baseline in --archs leaves nothing to measure"
    );
    // Said wherever the figures go when the baseline's cache is not the exact one.
    let kv_note = match opts.kv_cache {
        KvCacheDtype::F32 => String::new(),
        other => format!(", baseline KV cache {}", other.dtype().as_str()),
    };
    eprintln!(
        "frugal compare: size {} (hidden {}, {} layers, {} heads / {} KV, FFN {}, vocab {}), contexts {:?}, {}, random {} weights{kv_note}",
        s.name, s.hidden, s.layers, s.heads, s.kv_heads, s.ffn, s.vocab, contexts, device_label(&dev), opts.weights.name()
    );
    let bar = progress_bar();
    let records = compare::run(
        &s,
        &contexts,
        &archs,
        opts,
        &dev,
        |done, total, what| match &bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(what.to_string());
                if done == total {
                    bar.finish();
                }
            }
            // Not a terminal (a log, CI): one line per step.
            None => eprintln!("[{done}/{total}] {what}"),
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", compare::table(&records));
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "?".into());
    let title = format!(
        "frugal compare: {} size (hidden {}, {} layers), {}, f32 math, {} weights{kv_note}, {threads} threads, batch 1, random weights",
        s.name, s.hidden, s.layers, device_label(&dev), opts.weights.name()
    );
    plot::write_svg(plot, &records, &title)?;
    eprintln!("plot: {}", plot.display());
    Ok(())
}

fn main() -> ExitCode {
    // Freed buffers stay with the process: a decode loop reallocates the same ones every token.
    layers::alloc::keep_freed_memory();
    // candle 0.11's CPU matmul asks for its thread count on every call and, unless this variable
    // is set, reads /proc/cpuinfo to answer: set it once, here, before any thread exists.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Compare {
        size: SizeName::Small,
        layers: None,
        contexts: None,
        archs: Vec::new(),
        device: DeviceArg::Cpu,
        weights: Weights::F32,
        quantized_head: false,
        plain_head: false,
        kv_cache: KvCacheDtype::F32,
        plot: PathBuf::from("frugal-compare.svg"),
        json: false,
        no_baseline: false,
    });
    match command {
        Command::Compare {
            size,
            layers,
            contexts,
            archs,
            device,
            weights,
            quantized_head,
            plain_head,
            kv_cache,
            plot,
            json,
            no_baseline,
        } => run_compare(
            size,
            layers,
            contexts.as_deref(),
            &archs,
            device,
            Options {
                weights,
                quantized_head,
                plain_head,
                kv_cache,
            },
            &plot,
            json,
            no_baseline,
        ),
        Command::Generate {
            model,
            offline,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            arch,
            dtype,
            device: device_arg,
            json,
        } => {
            let sampling = generate::Sampling {
                temperature,
                top_k,
                top_p,
                seed,
            };
            sampling.validate()?;
            let dev = device(device_arg)?;
            // `Stdout`, not its lock: generation runs on a pool thread (layers::generation).
            let mut out = std::io::stdout();
            generate::generate(
                &model, offline, arch, dtype, &dev, &prompt, max_tokens, &sampling, json, &mut out,
            )?;
            Ok(())
        }
        Command::Info => info::print(),
        Command::Logits {
            model,
            offline,
            input_ids,
            max_new_tokens,
            arch,
            dtype,
            device: device_arg,
            timings,
        } => {
            let dev = device(device_arg)?;
            let ids = model_dir::parse_ids(&input_ids)?;
            let mut clock = logits::Timings::start();
            let model = hub::resolve_model(&model, offline, &[])?;
            let arch = model_dir::architecture(&model, arch)?;
            let out = match arch {
                a if a.is_griffin() => {
                    logits::griffin(&model, &ids, max_new_tokens, dtype, &dev, &mut clock)?
                }
                ModelArch::Bitnet => {
                    logits::bitnet(&model, &ids, max_new_tokens, dtype, &dev, &mut clock)?
                }
                ModelArch::Yoco => {
                    logits::f32_only(dtype, "yoco")?;
                    logits::yoco(&model, &ids, max_new_tokens, &dev, &mut clock)?
                }
                other => anyhow::bail!(
                    "`frugal logits` needs a decoder (recurrent_gemma, griffin, hawk, bitnet, \
                     yoco); {other:?} is an encoder: use `frugal classify`"
                ),
            };
            if timings {
                clock.report(ids.len(), max_new_tokens);
            }
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Command::Classify {
            model,
            offline,
            input_ids,
            arch,
            device: device_arg,
        } => {
            let dev = device(device_arg)?;
            let batch = model_dir::parse_batch(&input_ids)?;
            let model = hub::resolve_model(&model, offline, &[])?;
            let arch = model_dir::architecture(&model, arch)?;
            let out = match arch {
                ModelArch::Fastformer => logits::fastformer(&model, &batch, &dev)?,
                ModelArch::Smartbird => logits::smartbird(&model, &batch, &dev)?,
                other => anyhow::bail!(
                    "`frugal classify` needs an encoder (fastformer, smartbird); {other:?} is a \
                     decoder: use `frugal logits` or `frugal generate`"
                ),
            };
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
    }
}
