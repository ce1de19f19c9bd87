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
mod info;
mod logits;
mod model_dir;
mod plot;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Every architecture and a dense Transformer baseline at one model size, random weights:
    /// prefill and decode tokens/s, cache and weight bytes, and their ratios to the baseline,
    /// over context lengths. Prints a table and writes an SVG plot.
    Compare {
        /// Model size: tiny, small (default, under a minute on 2 cores) or base.
        #[arg(long, default_value = "small")]
        size: String,
        /// Context lengths, comma-separated (default: the size's).
        #[arg(long)]
        contexts: Option<String>,
        /// Architectures, comma-separated (default: all): yoco-gret, yoco-swa, griffin, hawk,
        /// bitnet, fastformer, smartbird, transformer (the baseline, always run).
        #[arg(long)]
        archs: Option<String>,
        /// cpu, or cuda (not available: the models' candle path runs on the CPU).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Where to write the SVG plot.
        #[arg(long, default_value = "frugal-compare.svg")]
        plot: PathBuf,
        /// Print the records as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a decoder checkpoint (RecurrentGemma / Griffin / Hawk, BitNet b1.58,
    /// YOCO), streaming it as it comes.
    Generate {
        /// A checkpoint directory (config.json, safetensors, tokenizer.json), or a Hugging Face
        /// repo id already in the local HF cache.
        #[arg(long)]
        model: String,
        #[arg(long)]
        prompt: String,
        /// Tokens to generate at most (EOS stops earlier).
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
        #[arg(long)]
        arch: Option<String>,
    },
    /// What this build has: CPU features, GPU and driver, compiled kernels.
    Info,
    /// Full-prompt logits of a decoder checkpoint, and greedy tokens decoded with its cache.
    Logits {
        /// Checkpoint directory (config.json and safetensors).
        #[arg(long)]
        model: PathBuf,
        /// Prompt token ids, comma-separated: 5,9,2
        #[arg(long)]
        input_ids: String,
        /// Greedy tokens to generate after the prompt, using the model's cache.
        #[arg(long, default_value_t = 0)]
        max_new_tokens: usize,
        /// Architecture, where config.json does not say (e.g. yoco).
        #[arg(long)]
        arch: Option<String>,
    },
    /// Class logits of an encoder checkpoint for a batch of sequences.
    Classify {
        /// Checkpoint directory (config.json and weights).
        #[arg(long)]
        model: PathBuf,
        /// Sequences separated by ';', ids by ',': "1,2,3;4,5,0"
        #[arg(long)]
        input_ids: String,
        /// Architecture, where config.json does not say.
        #[arg(long)]
        arch: Option<String>,
    },
}

fn run_compare(
    size: &str,
    contexts: Option<&str>,
    archs: Option<&str>,
    device: &str,
    plot: &std::path::Path,
    json: bool,
) -> Result<()> {
    match device {
        "cpu" => {}
        "cuda" => anyhow::bail!(
            "--device cuda: the models run their candle path on the CPU in this build; the CUDA \
             kernels are measured by `cargo xtask bench-gpu`"
        ),
        other => anyhow::bail!("--device `{other}`: use cpu (or cuda)"),
    }
    let s = compare::size(size)?;
    let contexts: Vec<usize> = match contexts {
        Some(c) => c
            .split(',')
            .map(|x| {
                let n: usize = x
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--contexts: `{x}` is not a length"))?;
                if n == 0 || n > compare::MAX_CONTEXT {
                    anyhow::bail!(
                        "--contexts: {n} is outside 1..={} (the longest context compare \
                         measures: each model's cache is sized for it, with random weights)",
                        compare::MAX_CONTEXT
                    );
                }
                Ok(n)
            })
            .collect::<Result<_>>()?,
        None => s.contexts.to_vec(),
    };
    // The plot is written after minutes of measuring: a path that cannot be written is found now.
    plot::check_writable(plot)?;
    let mut archs: Vec<String> = match archs {
        Some(a) => a.split(',').map(|x| x.trim().to_string()).collect(),
        None => compare::ARCHS.iter().map(|a| a.to_string()).collect(),
    };
    if let Some(bad) = archs.iter().find(|a| !compare::ARCHS.contains(&a.as_str())) {
        anyhow::bail!(
            "--archs: unknown `{bad}`; known: {}",
            compare::ARCHS.join(", ")
        );
    }
    // The baseline every ratio is taken against.
    archs.retain(|a| a != "transformer");
    archs.push("transformer".into());
    eprintln!(
        "frugal compare: size {} (hidden {}, {} layers, {} heads / {} KV, FFN {}, vocab {}), contexts {:?}, CPU, random weights",
        s.name, s.hidden, s.layers, s.heads, s.kv_heads, s.ffn, s.vocab, contexts
    );
    let records = compare::run(&s, &contexts, &archs, |done, total, what| {
        let width = 30;
        let filled = width * done / total.max(1);
        eprint!(
            "\r[{}{}] {done}/{total} {what:<40}",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        print!("{}", compare::table(&records));
    }
    let title = format!("frugal compare: {} size, CPU, batch 1", s.name);
    plot::write_svg(plot, &records, &title)?;
    eprintln!("plot: {}", plot.display());
    Ok(())
}

fn main() -> ExitCode {
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
        size: "small".into(),
        contexts: None,
        archs: None,
        device: "cpu".into(),
        plot: PathBuf::from("frugal-compare.svg"),
        json: false,
    });
    match command {
        Command::Compare {
            size,
            contexts,
            archs,
            device,
            plot,
            json,
        } => run_compare(
            &size,
            contexts.as_deref(),
            archs.as_deref(),
            &device,
            &plot,
            json,
        ),
        Command::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            arch,
        } => {
            let sampling = generate::Sampling {
                temperature,
                top_k,
                top_p,
                seed,
            };
            sampling.validate()?;
            let mut out = std::io::stdout().lock();
            generate::generate(
                &model,
                arch.as_deref(),
                &prompt,
                max_tokens,
                &sampling,
                &mut out,
            )?;
            Ok(())
        }
        Command::Info => info::print(),
        Command::Logits {
            model,
            input_ids,
            max_new_tokens,
            arch,
        } => {
            let ids = model_dir::parse_ids(&input_ids)?;
            let arch = model_dir::architecture(&model, arch.as_deref())?;
            let out = match arch.as_str() {
                "recurrent_gemma" | "griffin" | "hawk" => {
                    logits::griffin(&model, &ids, max_new_tokens)?
                }
                "bitnet" => logits::bitnet(&model, &ids, max_new_tokens)?,
                "yoco" => logits::yoco(&model, &ids, max_new_tokens)?,
                other => return model_dir::unsupported(other, "logits"),
            };
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Command::Classify {
            model,
            input_ids,
            arch,
        } => {
            let batch = model_dir::parse_batch(&input_ids)?;
            let arch = model_dir::architecture(&model, arch.as_deref())?;
            let out = match arch.as_str() {
                "fastformer" => logits::fastformer(&model, &batch)?,
                "smartbird" => logits::smartbird(&model, &batch)?,
                other => return model_dir::unsupported(other, "classify"),
            };
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
    }
}
