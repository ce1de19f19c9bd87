//! `cargo xtask vs-llamacpp`: frugal's dense baseline against llama.cpp (what CPU users run
//! instead) on the same shape, the same machine and the same threads, back to back in one run.
//!
//! Both sides run the Llama-style model of `frugal compare --size small` (hidden 256, 4 layers,
//! 4 heads / 2 KV heads, SwiGLU 768, vocabulary 4096) with random weights:
//! - frugal: `frugal compare --archs transformer --json` (prefill of 256/1024/2048 tokens, then
//!   16 decode steps after each, medians of at least three runs), with f32 weights (once with
//!   its exact f32 KV cache, once with `--kv-cache f16` as llama.cpp's default) and with bf16
//!   weights (`--weights bf16`: kept in bf16, widened to f32 inside the kernels);
//! - llama.cpp: `llama-bench` on GGUFs written here (`gguf.rs`) with f32 and with f16 matrices:
//!   prefill `-p 256,1024,2048`, and decode `-n 16 -d 256,1024,2048` (16 tokens generated after
//!   that many in the cache). llama-bench's defaults otherwise (its KV cache is f16).
//!
//! It prints one table: frugal f32 against llama.cpp f32 (with our f32 and with an f16 KV
//! cache), and frugal bf16 against llama.cpp f16 (the same bytes per weight), and writes the raw
//! results beside the models.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::gguf::{self, Matrices};
use crate::side_by_side::{
    alternating, frugal_compare, llama_bench, median, median_ratio, rate, Runs,
};

const CONTEXTS: [usize; 3] = [256, 1024, 2048];
const DECODE_TOKENS: usize = 16;

pub fn run(
    root: &Path,
    llama_bench_exe: &Path,
    models: Option<PathBuf>,
    runs: Runs,
) -> Result<PathBuf> {
    let Runs {
        threads,
        reps,
        rounds,
    } = runs;
    ensure!(
        llama_bench_exe.is_file(),
        "--llama-bench {}: not a file (build llama.cpp's llama-bench first; README says how)",
        llama_bench_exe.display()
    );
    ensure!(
        threads > 0 && reps > 0 && rounds > 0,
        "--threads, --reps and --rounds must be positive"
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
    // frugal's side three times: f32 weights (against llama.cpp's f32 GGUF), with our f32 KV
    // cache and with an f16 one as llama.cpp's default; and bf16 weights, kept in bf16 and
    // widened inside the kernels (against its f16 GGUF: two bytes a weight on both sides).
    let frugal_run = |weights: &str, kv: &str| -> Result<Value> {
        eprintln!(
            "frugal: the dense baseline, {weights} weights, {kv} KV cache, {threads} threads"
        );
        let plot = dir.join(format!("frugal-baseline-{weights}-kv-{kv}.svg"));
        let args = [
            "--size",
            "small",
            "--archs",
            "transformer",
            "--weights",
            weights,
            "--kv-cache",
            kv,
        ];
        let plot = ["--contexts", &contexts, "--plot", &plot.to_string_lossy()];
        let save = dir.join(format!("frugal-{weights}-kv-{kv}.json"));
        frugal_compare(root, &[&args[..], &plot[..]].concat(), threads, &save)
    };
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
    let results = alternating(
        rounds,
        "dense baseline",
        || {
            Ok((
                frugal_run("f32", "f32")?,
                frugal_run("f32", "f16")?,
                frugal_run("bf16", "f32")?,
            ))
        },
        || {
            let prefill = bench("prefill", &["-p", &contexts, "-n", "0"])?;
            let decode = bench(
                "decode",
                &["-p", "0", "-n", &DECODE_TOKENS.to_string(), "-d", &contexts],
            )?;
            Ok((prefill, decode))
        },
    )?;
    let prefill = &results[0].1 .0;
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
        "{:<18} {:>11} {:>13} {:>7} {:>11} {:>7} {:>12} {:>13} {:>7}",
        "tokens/s",
        "frugal f32",
        "llama.cpp f32",
        "ratio",
        "f16 KV",
        "ratio",
        "frugal bf16",
        "llama.cpp f16",
        "ratio"
    );
    // (label, our key, which llama.cpp run (0 prefill, 1 decode) and its (prompt, generated,
    // depth)) per table row.
    let rows = CONTEXTS
        .iter()
        .map(|&c| (format!("prefill {c}"), "prefill_tokens_per_s", 0, (c, 0, 0)))
        .chain(CONTEXTS.iter().map(|&c| {
            let test = (0, DECODE_TOKENS, c);
            (format!("decode after {c}"), "decode_tokens_per_s", 1, test)
        }));
    for (label, key, run, (prompt, generated, depth)) in rows {
        // Prefill rows are keyed by the prompt, decode rows by the depth before them.
        let at = prompt.max(depth);
        // Per round: frugal f32, llama.cpp f32, frugal bf16, llama.cpp f16, frugal f32 with an
        // f16 KV cache.
        let per_round: Vec<[Option<f64>; 5]> = results
            .iter()
            .map(|((f32s, f16_kv, bf16s), (p, d))| {
                let runs = if run == 0 { p } else { d };
                [
                    ours(f32s, at, key),
                    llama(runs, &f32_model, prompt, generated, depth),
                    ours(bf16s, at, key),
                    llama(runs, &f16_model, prompt, generated, depth),
                    ours(f16_kv, at, key),
                ]
            })
            .collect();
        let column = |i: usize| median(per_round.iter().map(|r| r[i]));
        // The ratio is the median of each round's own ratio (both sides measured minutes apart
        // at most), not the ratio of the medians.
        let ratio_of = |a: usize, b: usize| median_ratio(per_round.iter().map(|r| (r[a], r[b])));
        println!(
            "{:<18} {:>11} {:>13} {:>7} {:>11} {:>7} {:>12} {:>13} {:>7}",
            label,
            fmt(column(0)),
            fmt(column(1)),
            ratio_of(0, 1),
            fmt(column(4)),
            ratio_of(4, 1),
            fmt(column(2)),
            fmt(column(3)),
            ratio_of(2, 3)
        );
    }
    if rounds > 1 {
        println!("medians of {rounds} rounds (each ratio: the median of the rounds' ratios)");
    }
    println!("raw results: {}", dir.display());
    Ok(dir)
}
