//! frugal's build tasks. Run as `cargo xtask <task>` (an alias in .cargo/config.toml).
mod bindings;
mod cuda;
mod gguf;
mod gpu_bundle;
mod ptx;
mod vs_llamacpp;

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
    /// Install the pinned CUDA compiler (NVRTC 12.4, ptxas, headers) from PyPI into .cuda/.
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
    /// Run the GPU tests (fails without a GPU), or build them into gpu-bundle/ for a GPU host.
    TestGpu {
        /// Build the self-contained test binaries and a run script into gpu-bundle/, run nothing.
        #[arg(long)]
        no_run: bool,
    },
    /// Run the GPU kernel benchmark (fails without a GPU), or build it into gpu-bundle/.
    BenchGpu {
        /// Build the self-contained benchmark binary and bench-gpu.sh into gpu-bundle/, run nothing.
        #[arg(long)]
        no_run: bool,
    },
    /// Type-check the candle custom ops' CUDA path (candle's `cuda` feature; needs a CUDA toolkit).
    CheckCuda,
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
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.task {
        Task::SetupCuda => cuda::setup(&root),
        Task::Ptx { check } => ptx::run(&root, check),
        Task::Bindings { check } => bindings::run(&root, check),
        Task::TestGpu { no_run } => gpu_bundle::test(&root, no_run),
        Task::BenchGpu { no_run } => gpu_bundle::bench(&root, no_run),
        Task::CheckCuda => cuda::check_candle_cuda(&root),
        Task::Tidy => tidy(&root),
        Task::VsLlamacpp {
            llama_bench,
            models,
            threads,
            reps,
        } => vs_llamacpp::run(&root, &llama_bench, models, threads, reps),
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
