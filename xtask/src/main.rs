//! frugal's build tasks. Run as `cargo xtask <task>` (an alias in .cargo/config.toml).
mod bindings;
mod cuda;
mod gguf;
mod gpu_bundle;
mod ptx;
mod side_by_side;
mod stubs;
mod vs_llamacpp;
mod vs_llamacpp_bitnet;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "frugal's build tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the pinned CUDA compilers from PyPI into .cuda/: NVRTC 12.4 (our PTX) and nvcc 13.0
    /// (the `cuda` build's candle kernels).
    SetupCuda,
    /// Compile every kernels/cuda/*.cu to PTX in kernels/ptx/ and assemble it for sm_80 and sm_90.
    Ptx {
        /// Fail if the committed PTX differs from what the sources compile to; write nothing.
        #[arg(long)]
        check: bool,
    },
    /// Generate kernels/src/params.rs from kernels/cuda/include/frugal_params.h with bindgen.
    Bindings {
        /// Fail if the committed bindings are stale; write nothing.
        #[arg(long)]
        check: bool,
    },
    /// Run the kernels' GPU tests here (fails without a GPU).
    TestGpu,
    /// Run the GPU kernel benchmark here (fails without a GPU).
    BenchGpu,
    /// Clippy of the `cuda` build (candle's CUDA backend, the ops' cuda_fwd) with the pinned nvcc.
    CheckCuda,
    /// Build gpu-bundle/: frugal, the GPU tests and the GPU benchmark in the `cuda` build, the
    /// fixtures and run.sh, for a GPU host with no Rust toolchain (see README, "On a GPU").
    GpuBundle,
    /// Check that the hand-kept lists follow the CUDA sources: each `kernels/cuda/*.cu` has its
    /// PTX and its `kernels::ptx` module, and each kernel an entry in the emulator's table (the
    /// `tidy` tests, which the README's test command also runs).
    Tidy,
    /// frugal's dense baseline against llama.cpp's llama-bench on the same shape (hidden 256,
    /// 4 layers; GGUFs with random weights written here), back to back: prefill 256/1024/2048 and
    /// decode after as many, with the ratios.
    VsLlamacpp {
        /// A llama.cpp `llama-bench` binary (CPU build).
        #[arg(long)]
        llama_bench: PathBuf,
        /// Where the GGUFs and raw results go (default target/vs-llamacpp).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Threads for both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// llama-bench repetitions (frugal takes the median of at least three runs).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Rounds of each comparison (dense and BitNet), the sides' order alternating; the
        /// tables show medians (this machine's speed drifts by a fifth or more over minutes).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Also BitNet b1.58 at 2B4T widths against llama.cpp TQ2_0: the folder of the anchor
        /// scripts' GGUFs (`bitnet-L{N}-tq2_0.gguf`, `bitnet-L{N}-tq2_0-embf16.gguf`).
        #[arg(long)]
        bitnet_models: Option<PathBuf>,
        /// BitNet's layer counts (comma-separated), each with its GGUFs in --bitnet-models.
        #[arg(long, value_delimiter = ',', default_value = "4")]
        bitnet_layers: Vec<usize>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.task {
        Task::SetupCuda => cuda::setup(&root),
        Task::Ptx { check } => ptx::run(&root, check),
        Task::Bindings { check } => bindings::run(&root, check),
        Task::TestGpu => gpu_bundle::test(&root),
        Task::BenchGpu => gpu_bundle::bench(&root),
        Task::CheckCuda => cuda::check_cuda(&root),
        Task::GpuBundle => gpu_bundle::bundle(&root),
        Task::Tidy => tidy(&root),
        Task::VsLlamacpp {
            llama_bench,
            models,
            threads,
            reps,
            rounds,
            bitnet_models,
            bitnet_layers,
        } => {
            let runs = side_by_side::Runs {
                threads,
                reps,
                rounds,
            };
            let dir = vs_llamacpp::run(&root, &llama_bench, models, runs)?;
            if let Some(bitnet) = bitnet_models {
                for layers in bitnet_layers {
                    vs_llamacpp_bitnet::run(&root, &llama_bench, &bitnet, layers, runs, &dir)?;
                }
            }
            Ok(())
        }
    }
}

fn tidy(root: &std::path::Path) -> Result<()> {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["test", "-p", "kernels", "--test", "it", "tidy::"])
        .current_dir(root)
        .status()
        .context("running cargo test")?;
    anyhow::ensure!(
        status.success(),
        "the hand-kept lists are out of step with kernels/cuda (see the tidy test's message)"
    );
    Ok(())
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .context("xtask's manifest directory has no parent")
}

/// Writes `content` to `path`, or with `check` compares instead; returns whether it was fresh.
fn write_or_check(path: &std::path::Path, content: &str, check: bool) -> Result<bool> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == content {
        return Ok(true);
    }
    if !check {
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(false)
}
