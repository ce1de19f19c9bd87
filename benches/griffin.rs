//! Griffin (RecurrentGemma) on the CPU: prefill tokens/s at T = 512 and 2048, and decode time per
//! token after a 128-token prompt, for frugal's `griffin` and, side by side in the same run on the
//! same random weights, candle-transformers' `recurrent_gemma` (the Rust peer).
//!
//! Configs (as in the project's peer measurements): "tiny" = hidden 64, 4 layers, 4 heads, window 8,
//! vocab 256 (the fixture's shape); "small" = hidden 512, 6 layers (r, r, a),
//! 8 heads × 64, lru 512, window 256, vocab 32000, MLP 1536 per branch; "2b-layers" = the 2B's
//! widths (2560, 10 × 256, lru 2560, MLP 7680, vocab 256000) with 3 layers (r, r, a).
//!
//! Both compute logits only for the last prompt position. Read ratios off one run: criterion
//! prints each line's time and throughput (elements = tokens).
//!
//! First, one table for the "small" config puts both against this machine's limits, measured in
//! the same run: prefill as multiply-add work per second against the best f32 matmul rate here
//! (candle's or frugal's own, whichever is faster: the dense layers run on them), decode as
//! weight bytes streamed per second against the machine's threaded read bandwidth (each decode
//! step reads every f32 weight once), and what the goals (≥ 5× the peer's prefill, ≥ 1.5× its decode) would need of each.
//! The prefill and the matmul peak are measured in alternating rounds (five with
//! `FRUGAL_BENCH_QUICK`, else nine) and the ratio printed is the median of the rounds' ratios,
//! with their range: a single pair of measurements moved by ±0.06 from run to run here.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

struct Pair {
    ours: griffin::Model,
    peer: candle_transformers::models::recurrent_gemma::Model,
    cfg: griffin::Config,
    vocab: u32,
    weight_bytes: usize,
}

fn hf_config(
    hidden: usize,
    layers: usize,
    heads: usize,
    window: usize,
    vocab: usize,
) -> serde_json::Value {
    serde_json::json!({
        "model_type": "recurrent_gemma", "num_hidden_layers": layers, "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": 6 * hidden, "num_attention_heads": heads,
        "num_key_value_heads": 1, "head_dim": hidden / heads, "lru_width": hidden,
        "attention_window_size": window, "conv1d_width": 4, "logits_soft_cap": 30.0,
        "hidden_activation": "gelu_pytorch_tanh", "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "block_types": ["recurrent", "recurrent", "attention"],
        "attention_bias": false
    })
}

fn pair(json: &serde_json::Value) -> Pair {
    let cfg = griffin::Config::from_json(&json.to_string()).expect("config");
    // Random f32 weights (not the zeros a bare VarMap gives, which would be kept in bf16).
    let (ours, varmap) = frugal_benches::random_f32_model(|vb| griffin::Model::new(&cfg, vb));
    // The same tensors, by name, for the peer.
    let weight_bytes = varmap.all_vars().iter().map(|v| v.elem_count() * 4).sum();
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let peer_cfg = serde_json::from_value(json.clone()).expect("peer config");
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let peer = candle_transformers::models::recurrent_gemma::Model::new(&peer_cfg, vb.pp("model"))
        .expect("peer model");
    Pair {
        ours,
        peer,
        vocab: cfg.vocab_size as u32,
        cfg,
        weight_bytes,
    }
}

fn tokens(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13) % vocab).collect()
}

fn bench_config(c: &mut Criterion, name: &str, json: serde_json::Value, prefill: &[usize]) {
    let p = pair(&json);
    let mut group = c.benchmark_group(format!("griffin_{name}"));
    group.sample_size(10);
    for &t in prefill {
        let prompt = tokens(t, p.vocab);
        group.throughput(Throughput::Elements(t as u64));
        group.bench_with_input(
            BenchmarkId::new("prefill/frugal", t),
            &prompt,
            |b, prompt| {
                b.iter(|| {
                    let mut state = p.ours.new_state(1).expect("state");
                    p.ours.forward_last(&[prompt], &mut state).expect("prefill")
                })
            },
        );
        let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("ids");
        group.bench_with_input(BenchmarkId::new("prefill/candle", t), &ids, |b, ids| {
            b.iter_batched(
                || p.peer.clone(),
                |mut peer| peer.forward(ids, 0).expect("peer prefill"),
                BatchSize::LargeInput,
            )
        });
    }
    // One decode step after a 128-token prompt, from a copy of the prefilled state.
    let prompt = tokens(128, p.vocab);
    let mut state = p.ours.new_state(1).expect("state");
    p.ours
        .forward_last(&[&prompt], &mut state)
        .expect("prefill");
    let mut peer = p.peer.clone();
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    peer.forward(&ids, 0).expect("peer prefill");
    let next = Tensor::new(&[[5u32]], &Device::Cpu).expect("next");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_after_128/frugal", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| p.ours.forward_last(&[[5u32]], &mut s).expect("step"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode_after_128/candle", |b| {
        b.iter_batched(
            || peer.clone(),
            |mut m| m.forward(&next, 128).expect("peer step"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Floating-point operations per token of a `t`-token prefill: every layer's matmuls (2 per
/// multiply-add) and the local attention's scores and weighted sums, averaged over the prompt. The
/// output projection is left out (both compute it for the last token only).
fn prefill_flops_per_token(cfg: &griffin::Config, t: usize) -> f64 {
    use griffin::config::BlockType;
    let (d, w, f) = (cfg.hidden_size, cfg.lru_width, cfg.mlp_width);
    let (h, hd, kv) = (
        cfg.num_attention_heads,
        cfg.head_dim,
        cfg.num_key_value_heads,
    );
    let block = w / h;
    let avg_keys = (0..t)
        .map(|i| (i + 1).min(cfg.attention_window_size))
        .sum::<usize>() as f64
        / t as f64;
    let per_layer = |i: usize| -> f64 {
        let mlp = 3 * d * f;
        let mixer = match cfg.block_type(i) {
            // linear_x, linear_y, linear_out; the two block-diagonal gates.
            BlockType::Recurrent => (3 * d * w + 2 * w * block) as f64,
            // q, k, v, o; then q·k and p·v over the visible keys.
            BlockType::Attention => {
                (d * h * hd + 2 * d * kv * hd + h * hd * d) as f64
                    + 2.0 * avg_keys * (h * hd) as f64
            }
        };
        2.0 * (mlp as f64 + mixer)
    };
    (0..cfg.num_hidden_layers).map(per_layer).sum()
}

/// This machine's f32 matmul rate (FLOP/s) at the small config's largest prefill product, and at
/// a square 1024 one, the best of candle's (the `gemm` crate) and frugal's own
/// (`kernels::cpu_linear::matmul`, AVX-512 where the machine has it) at either: what this
/// machine's dense layers can do. Returns (best, candle's best, ours best).
fn matmul_peak() -> (f64, f64, f64) {
    let shapes = [(512, 512, 1536), (1024, 1024, 1024)];
    let mut candle = 0f64;
    let mut ours = 0f64;
    for (m, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).expect("x");
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).expect("w");
        let wt = w.t().expect("t");
        let s = frugal_benches::median_secs(5, || {
            std::hint::black_box(x.matmul(&wt).expect("matmul"));
        });
        candle = candle.max(2.0 * (m * k * n) as f64 / s);
        let xs: Vec<f32> = x.flatten_all().and_then(|t| t.to_vec1()).expect("x values");
        let ws: Vec<f32> = w.flatten_all().and_then(|t| t.to_vec1()).expect("w values");
        let s = layers::pool::on_pool(|| {
            frugal_benches::median_secs(5, || {
                let w = kernels::cpu_linear::Weights::F32(&ws);
                let y = kernels::cpu_linear::matmul(&xs, m, w, n, k, None);
                std::hint::black_box(y.expect("matmul"));
            })
        });
        ours = ours.max(2.0 * (m * k * n) as f64 / s);
    }
    (candle.max(ours), candle, ours)
}

/// Rounds of the prefill against the matmul peak: this machine's speed drifts by a fifth over
/// minutes (both sides move), so each round measures both, back to back, and the ratio reported
/// is the median of the rounds' own (as `cargo xtask vs-llamacpp` does against llama.cpp).
fn prefill_rounds() -> usize {
    if std::env::var_os("FRUGAL_BENCH_QUICK").is_some() {
        5
    } else {
        9
    }
}

fn roofline(p: &Pair, t: usize) {
    let prompt = tokens(t, p.vocab);
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    let flops = prefill_flops_per_token(&p.cfg, t) * t as f64;
    // (ours s, best peak, candle's, frugal's) per round.
    let mut rounds: Vec<(f64, f64, f64, f64)> = (0..prefill_rounds())
        .map(|_| {
            let ours = frugal_benches::median_secs(3, || {
                let mut state = p.ours.new_state(1).expect("state");
                std::hint::black_box(
                    p.ours
                        .forward_last(&[&prompt], &mut state)
                        .expect("prefill"),
                );
            });
            let (peak, candle_peak, our_peak) = matmul_peak();
            (ours, peak, candle_peak, our_peak)
        })
        .collect();
    let peer = frugal_benches::median_secs(3, || {
        let mut m = p.peer.clone();
        std::hint::black_box(m.forward(&ids, 0).expect("peer prefill"));
    });
    let mut ratios: Vec<f64> = rounds.iter().map(|r| flops / r.0 / r.1).collect();
    ratios.sort_by(f64::total_cmp);
    // The round whose ratio is the median, for the figures printed beside it.
    let median = ratios[ratios.len() / 2];
    rounds.sort_by(|a, b| (flops / a.0 / a.1).total_cmp(&(flops / b.0 / b.1)));
    let (ours, peak, candle_peak, our_peak) = rounds[rounds.len() / 2];
    println!("Griffin \"small\" against this machine's limits (prefill T = {t}, decode after 128 tokens)");
    println!(
        "prefill: {:.2} GFLOP per prompt; ours {:.1} ms = {:.1} GFLOP/s, peer {:.1} ms = {:.1} GFLOP/s; f32 matmul peak {:.1} GFLOP/s (candle {:.1}, frugal {:.1})",
        flops / 1e9, ours * 1e3, flops / ours / 1e9, peer * 1e3, flops / peer / 1e9, peak / 1e9,
        candle_peak / 1e9, our_peak / 1e9
    );
    println!(
        "         ours = {:.2} of the matmul peak (the median of {} rounds, each measuring both; {:.2}–{:.2})",
        median,
        ratios.len(),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    println!(
        "         ours/peer {:.2}x; 5x the peer needs {:.1} GFLOP/s = {:.2}x the matmul peak",
        peer / ours,
        5.0 * flops / peer / 1e9,
        5.0 * flops / peer / peak
    );
    let warm = tokens(128, p.vocab);
    let mut state = p.ours.new_state(1).expect("state");
    p.ours.forward_last(&[&warm], &mut state).expect("prefill");
    let mut peer_model = p.peer.clone();
    let warm_ids = Tensor::new(warm.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    peer_model.forward(&warm_ids, 0).expect("peer prefill");
    let next = Tensor::new(&[[5u32]], &Device::Cpu).expect("next");
    let ours = frugal_benches::median_secs(20, || {
        let mut s = state.clone();
        std::hint::black_box(p.ours.forward_last(&[[5u32]], &mut s).expect("step"));
    });
    let peer = frugal_benches::median_secs(20, || {
        let mut m = peer_model.clone();
        std::hint::black_box(m.forward(&next, 128).expect("peer step"));
    });
    let (read_bw, _) = frugal_benches::bandwidth(512 << 20);
    let bytes = p.weight_bytes as f64;
    println!(
        "decode:  {:.0} MB of f32 weights per token; ours {:.2} ms = {:.1} GB/s, peer {:.2} ms = {:.1} GB/s; read bandwidth {:.1} GB/s",
        bytes / 1e6, ours * 1e3, bytes / ours / 1e9, peer * 1e3, bytes / peer / 1e9, read_bw / 1e9
    );
    println!(
        "         ours/peer {:.2}x; 1.5x the peer needs {:.1} GB/s = {:.2}x the read bandwidth",
        peer / ours,
        1.5 * bytes / peer / 1e9,
        1.5 * bytes / peer / read_bw
    );
    println!();
}

fn benches(c: &mut Criterion) {
    frugal_benches::pin_threads();
    // As the `frugal` binary runs models (both sides gain: a prefill allocates and frees buffers
    // of megabytes, each a fresh zeroed mapping under glibc's defaults).
    layers::alloc::keep_freed_memory();
    roofline(&pair(&hf_config(512, 6, 8, 256, 32_000)), 512);
    // Narrow: per-timestep overheads dominate, where a parallel scan matters most.
    let mut tiny = hf_config(64, 4, 4, 8, 256);
    tiny["intermediate_size"] = 192.into();
    bench_config(c, "tiny", tiny, &[512, 2048]);
    bench_config(c, "small", hf_config(512, 6, 8, 256, 32_000), &[512, 2048]);
    if std::env::var_os("FRUGAL_BENCH_QUICK").is_none() {
        bench_config(
            c,
            "2b_layers",
            hf_config(2560, 3, 10, 2048, 256_000),
            &[512],
        );
    }
}

criterion_group!(griffin_benches, benches);
criterion_main!(griffin_benches);
