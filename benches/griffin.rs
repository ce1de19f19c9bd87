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

/// A config's widths, in the names the FLOP count and the products below use.
struct Widths {
    /// Hidden, RG-LRU and MLP widths.
    d: usize,
    w: usize,
    f: usize,
    /// Attention heads, their width, KV heads; the RG-LRU gates' block (`w / h`).
    h: usize,
    hd: usize,
    kv: usize,
    block: usize,
}

impl Widths {
    fn of(cfg: &griffin::Config) -> Widths {
        Widths {
            d: cfg.hidden_size,
            w: cfg.lru_width,
            f: cfg.mlp_width,
            h: cfg.num_attention_heads,
            hd: cfg.head_dim,
            kv: cfg.num_key_value_heads,
            block: cfg.lru_width / cfg.num_attention_heads,
        }
    }
}

/// Floating-point operations per token of a `t`-token prefill: every layer's matmuls (2 per
/// multiply-add) and the local attention's scores and weighted sums, averaged over the prompt. The
/// output projection is left out (both compute it for the last token only).
fn prefill_flops_per_token(cfg: &griffin::Config, t: usize) -> f64 {
    use griffin::config::BlockType;
    let Widths {
        d,
        w,
        f,
        h,
        hd,
        kv,
        block,
    } = Widths::of(cfg);
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

/// The prefill's dense products alone, at the model's shapes and in its order (per layer: the
/// temporal block's projections with their bias and residual epilogues, the RG-LRU's two
/// block-diagonal gates, the MLP's stacked gate and up with its GeLU gate taken, the down
/// projection adding the residual), each on f32 weights of its own (the model's bytes), then the
/// last token's logits GEMV over a vocabulary-sized f32 matrix. Returns (products s, logits s,
/// the products' FLOPs): what the prefill would take if its recurrence, attention, norms, conv
/// and copies took no time.
fn products_alone(cfg: &griffin::Config, t: usize) -> (f64, f64, f64) {
    use griffin::config::BlockType;
    use kernels::cpu_linear::{matmul_with, Epilogue, Weights};
    let Widths {
        d,
        w,
        f,
        h,
        hd,
        kv,
        block,
    } = Widths::of(cfg);
    // Values of no consequence that are not bf16 values (so nothing could take a bf16 path).
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 2_654_435_761 + seed * 40_503) % 65_521) as f32 / 65_521.0 - 0.5)
            .collect()
    };
    let residual = values(t * d, 2);
    let (store, add, glu) = (
        Epilogue::Store,
        Epilogue::Add(&residual),
        Epilogue::Glu(kernels::cpu_math::Glu::GeluTanh),
    );
    // (n, k, bias, epilogue) of each product; `None` for the gates' block-diagonal pair.
    let mut products: Vec<Option<(usize, usize, bool, Epilogue)>> = Vec::new();
    for i in 0..cfg.num_hidden_layers {
        match cfg.block_type(i) {
            BlockType::Recurrent => {
                products.extend([Some((2 * w, d, true, store)), None, Some((d, w, true, add))])
            }
            BlockType::Attention => products.extend([
                Some((h * hd, d, false, store)),
                Some((kv * hd, d, false, store)),
                Some((kv * hd, d, false, store)),
                Some((d, h * hd, true, add)),
            ]),
        }
        products.extend([Some((2 * f, d, true, glu)), Some((d, f, true, add))]);
    }
    let widest = [d, w, f, h * hd].into_iter().max().unwrap_or(d);
    let x = values(t * widest, 1);
    let gate_weights = (values(h * block * block, 3), values(h * block * block, 4));
    // Each product's own weights, as the model's: between two rounds every other weight and the
    // embedding pass through the caches, as between two prompts.
    let weights: Vec<Option<(Vec<f32>, Vec<f32>)>> = products
        .iter()
        .enumerate()
        .map(|(i, p)| p.map(|(n, k, _, _)| (values(n * k, 10 + i), values(n, 5))))
        .collect();
    let embedding = values(cfg.vocab_size * d, 6);
    let flops: f64 = products
        .iter()
        .map(|p| match p {
            Some((n, k, _, _)) => 2.0 * (t * n * k) as f64,
            None => 2.0 * 2.0 * (t * w * block) as f64,
        })
        .sum();
    let mut best = (f64::INFINITY, f64::INFINITY);
    // A warm-up round, then the best of three.
    for r in 0..4 {
        let (products_s, logits_s) = layers::pool::on_pool(|| {
            let start = std::time::Instant::now();
            for (p, wb) in products.iter().zip(&weights) {
                let out = match (p, wb) {
                    (Some((n, k, bias, end)), Some((wt, b))) => {
                        let b = bias.then_some(b.as_slice());
                        matmul_with(&x[..t * k], t, Weights::F32(wt), *n, *k, b, *end)
                            .expect("product")
                    }
                    _ => {
                        let (gx, ga) = kernels::cpu_gemm::block_diagonal_pair(
                            &x[..t * w],
                            t,
                            w,
                            h,
                            &gate_weights.0,
                            &gate_weights.1,
                        )
                        .expect("gates");
                        std::hint::black_box(ga);
                        gx
                    }
                };
                std::hint::black_box(out);
            }
            let products_s = start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            // The GEMV the model's `linear` takes for one row.
            let logits = kernels::cpu_linear::gemv(&x[..d], 1, &embedding, cfg.vocab_size, d);
            std::hint::black_box(logits.expect("logits"));
            (products_s, start.elapsed().as_secs_f64())
        });
        // The first round warms the code and the pool.
        if r > 0 {
            best = (best.0.min(products_s), best.1.min(logits_s));
        }
    }
    (best.0, best.1, flops)
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
    // Rounds in order of their ratio: the median round's figures are printed beside it.
    let ratio = |r: &(f64, f64, f64, f64)| flops / r.0 / r.1;
    rounds.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let (median, lowest, highest) = (
        ratio(&rounds[rounds.len() / 2]),
        ratio(&rounds[0]),
        ratio(&rounds[rounds.len() - 1]),
    );
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
        rounds.len(),
        lowest,
        highest
    );
    // Where the prefill's time goes against that peak: its products and logits alone.
    let (products_s, logits_s, product_flops) = products_alone(&p.cfg, t);
    println!(
        "         its products alone {:.1} ms = {:.1} GFLOP/s = {:.2} of the peak; the logits GEMV {:.1} ms ({:.0} MB of f32)",
        products_s * 1e3,
        product_flops / products_s / 1e9,
        product_flops / products_s / peak,
        logits_s * 1e3,
        (p.cfg.vocab_size * p.cfg.hidden_size * 4) as f64 / 1e6
    );
    let rest = ours - products_s - logits_s;
    let budget = flops / (0.85 * peak) - products_s - logits_s;
    println!(
        "         with nothing else the prefill would run at {:.2} of the peak; the rest (recurrence, attention, norms, conv, copies) takes {:.1} ms, {:.1} ms at 0.85",
        flops / (products_s + logits_s) / peak,
        rest * 1e3,
        budget * 1e3
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
