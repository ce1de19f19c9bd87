//! `frugal`: run frugal's models from the command line.
//!
//! - `frugal info`: what this build has (CPU features, GPU and driver, kernels).
//! - `frugal logits --model DIR --input-ids 5,9,2 [--max-new-tokens N] [--arch NAME]`: one JSON
//!   object `{"logits_shape": [1, T, V], "logits": [...], "new_tokens": [...]}` (the contract every
//!   decoder model is checked through).
//! - `frugal classify --model DIR --input-ids "1,2,3;4,5,0" [--arch NAME]`: encoders,
//!   `{"logits_shape": [B, C], "logits": [...]}`.
//!
//! Errors go to stderr with a non-zero exit.
mod info;
mod logits;
mod model_dir;

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
#[command(arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
