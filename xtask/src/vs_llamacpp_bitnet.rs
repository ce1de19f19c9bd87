//! `cargo xtask vs-llamacpp --bitnet-models DIR`: BitNet b1.58 at 2B4T's widths against
//! llama.cpp's TQ2_0 on the same machine and threads, back to back in one run.
//!
//! - frugal: `frugal compare --size 2b4t --layers L --archs bitnet --weights bf16 --no-baseline`
//!   (random master weights ternarised and packed at load, the tied embedding bf16 as 2B4T's
//!   is, held losslessly in 12 bits a weight by default: the exact head): prefill of 128
//!   tokens, then 16 decode steps; again with `--quantized-head` (the opt-in, lossy 4-bit
//!   head).
//! - llama.cpp: `llama-bench` on the GGUFs the anchor scripts write (`bitnet-L{L}-tq2_0.gguf`,
//!   whose tied embedding llama-quantize makes Q6_K, and `bitnet-L{L}-tq2_0-embf16.gguf`, the
//!   embedding kept f16): `-p 128 -n 0` and `-p 0 -n 16 -d 128`.
use std::path::Path;

use anyhow::{ensure, Result};
use serde_json::Value;

use crate::side_by_side::{
    alternating, frugal_compare, llama_bench, median, median_ratio, rate, Runs,
};

const PROMPT: usize = 128;
const DECODE_TOKENS: usize = 16;

pub fn run(
    root: &Path,
    llama_bench_exe: &Path,
    models: &Path,
    layers: usize,
    runs: Runs,
    out_dir: &Path,
) -> Result<()> {
    let Runs {
        threads,
        reps,
        rounds,
    } = runs;
    let q6k = models.join(format!("bitnet-L{layers}-tq2_0.gguf"));
    let f16 = models.join(format!("bitnet-L{layers}-tq2_0-embf16.gguf"));
    for m in [&q6k, &f16] {
        ensure!(
            m.is_file(),
            "{} is missing: write it with the anchor scripts' gen_models.sh {layers}",
            m.display()
        );
    }
    // frugal twice: the exact head (bf16 values in 12 bits), and the opt-in 4-bit one.
    let frugal_run = |quantized: bool| -> Result<Value> {
        let head = if quantized { "4-bit" } else { "exact" };
        eprintln!("frugal: BitNet at 2B4T widths, {layers} layers, {head} head, {threads} threads");
        let (layers, prompt) = (layers.to_string(), PROMPT.to_string());
        let plot = out_dir.join(format!("frugal-bitnet-{head}.svg"));
        let mut args = vec!["--size", "2b4t", "--archs", "bitnet", "--no-baseline"];
        args.extend([
            "--layers",
            &layers,
            "--weights",
            "bf16",
            "--contexts",
            &prompt,
        ]);
        let plot = plot.to_string_lossy();
        args.extend(["--plot", &plot]);
        if quantized {
            args.push("--quantized-head");
        }
        let save = out_dir.join(format!("frugal-bitnet-L{layers}-{head}.json"));
        frugal_compare(root, &args, threads, &save)
    };
    let ours = |frugal: &Value, key: &str| {
        frugal
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["arch"] == "bitnet"))
            .and_then(|r| r[key].as_f64())
    };

    let bench = |what: &str, args: &[&str]| -> Result<Vec<Value>> {
        eprintln!("llama.cpp: BitNet {what}, {threads} threads");
        let save = out_dir.join(format!("llama-bench-bitnet-{what}.json"));
        llama_bench(llama_bench_exe, &[&q6k, &f16], args, (threads, reps), &save)
    };
    let results = alternating(
        rounds,
        &format!("BitNet, {layers} layers"),
        || Ok((frugal_run(false)?, frugal_run(true)?)),
        || {
            let prefill = bench("prefill", &["-p", &PROMPT.to_string(), "-n", "0"])?;
            let decode = bench(
                "decode",
                &[
                    "-p",
                    "0",
                    "-n",
                    &DECODE_TOKENS.to_string(),
                    "-d",
                    &PROMPT.to_string(),
                ],
            )?;
            Ok((prefill, decode))
        },
    )?;
    let llama = |rows: &[Value], model: &Path| {
        rows.iter()
            .find(|r| r["model_filename"].as_str() == model.to_str())
            .and_then(|r| r["avg_ts"].as_f64())
    };
    let fmt = |v| rate(v, 1);
    println!(
        "BitNet b1.58 at 2B4T widths, {layers} layers, {threads} threads; our exact head: the bf16 embedding in 12 bits (lossless); llama.cpp's head is Q6_K (TQ2_0) or f16"
    );
    println!(
        "{:<18} {:>12} {:>7} {:>7} {:>11} {:>7} {:>7} {:>9} {:>9}",
        "tokens/s",
        "frugal exact",
        "/Q6_K",
        "/f16",
        "frugal 4b",
        "/Q6_K",
        "/f16",
        "TQ2_0",
        "TQ2_0 f16"
    );
    for (label, key, run) in [
        (format!("prefill {PROMPT}"), "prefill_tokens_per_s", 0),
        (format!("decode after {PROMPT}"), "decode_tokens_per_s", 1),
    ] {
        // Per round: frugal exact head, frugal 4-bit head, llama.cpp Q6_K head, f16 head.
        let per_round: Vec<[Option<f64>; 4]> = results
            .iter()
            .map(|((exact, quantized), (p, d))| {
                let rows = if run == 0 { p } else { d };
                [
                    ours(exact, key),
                    ours(quantized, key),
                    llama(rows, &q6k),
                    llama(rows, &f16),
                ]
            })
            .collect();
        let column = |i: usize| median(per_round.iter().map(|r| r[i]));
        // The median of the rounds' own ratios.
        let ratio_of = |a: usize, b: usize| median_ratio(per_round.iter().map(|r| (r[a], r[b])));
        println!(
            "{:<18} {:>12} {:>7} {:>7} {:>11} {:>7} {:>7} {:>9} {:>9}",
            label,
            fmt(column(0)),
            ratio_of(0, 2),
            ratio_of(0, 3),
            fmt(column(1)),
            ratio_of(1, 2),
            ratio_of(1, 3),
            fmt(column(2)),
            fmt(column(3))
        );
    }
    if rounds > 1 {
        println!("medians of {rounds} rounds (each ratio: the median of the rounds' ratios)");
    }
    Ok(())
}
