//! `cargo xtask vs-llamacpp`: frugal's dense baseline against llama.cpp (what CPU users run
//! instead) on the same shape, the same machine and the same threads, back to back in one run.
//!
//! Both sides run the Llama-style model of `frugal compare --size small` (hidden 256, 4 layers,
//! 4 heads / 2 KV heads, SwiGLU 768, vocabulary 4096) with random weights:
//! - frugal: `frugal compare --archs transformer --json` (prefill of 256/1024/2048 tokens, then
//!   16 decode steps after each, medians of at least three runs), with f32 weights and with bf16
//!   weights (`--weights bf16`: kept in bf16, widened to f32 inside the kernels);
//! - llama.cpp: `llama-bench` on GGUFs written here (`gguf.rs`) with f32 and with f16 matrices:
//!   prefill `-p 256,1024,2048`, and decode `-n 16 -d 256,1024,2048` (16 tokens generated after
//!   that many in the cache). llama-bench's defaults otherwise (its KV cache is f16).
//!
//! It prints one table: frugal f32 against llama.cpp f32, and frugal bf16 against llama.cpp f16
//! (the same bytes per weight), and writes the raw results beside the models.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::gguf::{self, Matrices};
use crate::side_by_side::{frugal_compare, llama_bench, rate, ratio};

const CONTEXTS: [usize; 3] = [256, 1024, 2048];
const DECODE_TOKENS: usize = 16;

pub fn run(
    root: &Path,
    llama_bench_exe: &Path,
    models: Option<PathBuf>,
    threads: usize,
    reps: usize,
) -> Result<PathBuf> {
    ensure!(
        llama_bench_exe.is_file(),
        "--llama-bench {}: not a file (build llama.cpp's llama-bench first; README says how)",
        llama_bench_exe.display()
    );
    ensure!(
        threads > 0 && reps > 0,
        "--threads and --reps must be positive"
    );
    let dir = models.unwrap_or_else(|| root.join("target/vs-llamacpp"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let f32_model = dir.join("dense-f32.gguf");
    let f16_model = dir.join("dense-f16.gguf");
    for (path, matrices) in [(&f32_model, Matrices::F32), (&f16_model, Matrices::F16)] {
        if !path.is_file() {
            eprintln!("writing {}", path.display());
            gguf::write_dense(path, &gguf::SMALL, matrices)?;
        }
    }

    eprintln!("building frugal (release)");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "frugal"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --release -p frugal failed");

    let contexts = CONTEXTS.map(|c| c.to_string()).join(",");
    // frugal's side twice: f32 weights (against llama.cpp's f32 GGUF) and bf16 weights, kept in
    // bf16 and widened inside the kernels (against its f16 GGUF: two bytes a weight on both sides).
    let frugal_run = |weights: &str| -> Result<Value> {
        eprintln!("frugal: the dense baseline, {weights} weights, {threads} threads");
        let plot = dir.join(format!("frugal-baseline-{weights}.svg"));
        let args = [
            "--size",
            "small",
            "--archs",
            "transformer",
            "--weights",
            weights,
        ];
        let plot = ["--contexts", &contexts, "--plot", &plot.to_string_lossy()];
        let save = dir.join(format!("frugal-{weights}.json"));
        frugal_compare(root, &[&args[..], &plot[..]].concat(), threads, &save)
    };
    let frugal_f32 = frugal_run("f32")?;
    let frugal_bf16 = frugal_run("bf16")?;

    let bench = |what: &str, args: &[&str]| -> Result<Vec<Value>> {
        eprintln!("llama.cpp: {what}, {threads} threads");
        let save = dir.join(format!("llama-bench-{what}.json"));
        llama_bench(
            llama_bench_exe,
            &[&f32_model, &f16_model],
            args,
            (threads, reps),
            &save,
        )
    };
    let prefill = bench("prefill", &["-p", &contexts, "-n", "0"])?;
    let decode = bench(
        "decode",
        &["-p", "0", "-n", &DECODE_TOKENS.to_string(), "-d", &contexts],
    )?;
    let build = prefill
        .first()
        .and_then(|r| r["build_commit"].as_str())
        .unwrap_or("?")
        .to_string();

    // llama.cpp tokens/s of `model` (path) for one test.
    let llama = |rows: &[Value], model: &Path, prompt: usize, generated: usize, depth: usize| {
        rows.iter()
            .find(|r| {
                r["model_filename"].as_str() == model.to_str()
                    && r["n_prompt"].as_u64() == Some(prompt as u64)
                    && r["n_gen"].as_u64() == Some(generated as u64)
                    && r["n_depth"].as_u64().unwrap_or(0) == depth as u64
            })
            .and_then(|r| r["avg_ts"].as_f64())
    };
    let ours = |frugal: &Value, context: usize, key: &str| {
        frugal
            .as_array()
            .and_then(|rs| {
                rs.iter()
                    .find(|r| r["context"].as_u64() == Some(context as u64))
            })
            .and_then(|r| r[key].as_f64())
    };
    let fmt = |v| rate(v, 0);
    println!(
        "dense baseline (hidden 256, 4 layers, 4/2 heads, FFN 768, vocab 4096), {threads} threads; llama.cpp {build}"
    );
    println!(
        "{:<18} {:>11} {:>13} {:>7} {:>12} {:>13} {:>7}",
        "tokens/s", "frugal f32", "llama.cpp f32", "ratio", "frugal bf16", "llama.cpp f16", "ratio"
    );
    // (label, our key, llama.cpp's rows and their (prompt, generated, depth)) per table row.
    let rows = CONTEXTS
        .iter()
        .map(|&c| {
            (
                format!("prefill {c}"),
                "prefill_tokens_per_s",
                &prefill,
                (c, 0, 0),
            )
        })
        .chain(CONTEXTS.iter().map(|&c| {
            let test = (0, DECODE_TOKENS, c);
            (
                format!("decode after {c}"),
                "decode_tokens_per_s",
                &decode,
                test,
            )
        }));
    for (label, key, runs, (prompt, generated, depth)) in rows {
        // Prefill rows are keyed by the prompt, decode rows by the depth before them.
        let at = prompt.max(depth);
        let (us32, us16) = (ours(&frugal_f32, at, key), ours(&frugal_bf16, at, key));
        let f32s = llama(runs, &f32_model, prompt, generated, depth);
        let f16s = llama(runs, &f16_model, prompt, generated, depth);
        println!(
            "{:<18} {:>11} {:>13} {:>7} {:>12} {:>13} {:>7}",
            label,
            fmt(us32),
            fmt(f32s),
            ratio(us32, f32s),
            fmt(us16),
            fmt(f16s),
            ratio(us16, f16s)
        );
    }
    println!("raw results: {}", dir.display());
    Ok(dir)
}
