//! YOCO's claims, measured (docs/yoco.md §5): cache memory, prefill with early exit, and decode,
//! against the same-size Transformer (the `transformer` crate: every layer full causal GQA
//! attention with its own KV cache, on the same kernels; [`same_size_transformer`]).
//!
//! Printed first, one run:
//! 1. Cache bytes of YOCO-3B (gated retention; and with a 1024-token sliding window) and of the
//!    same-size Transformer at T = 4K, 32K, 128K, read from the real cache objects (f32), and the
//!    ratio; the paper's O((N + L)·D) against O(L·N·D).
//! 2. Prefill time, YOCO with early exit vs the Transformer, at T = 2K and 8K (dim 256, 8 layers,
//!    4 heads / 2 KV heads, FFN 768, vocab 4096, random weights): ratio.
//! 3. Decode tokens/s after a 4K context, both models.
//!
//! Then criterion: the window-attention and gated-retention CPU kernels at T = 2048.
//! `FRUGAL_BENCH_QUICK=1`: T = 2K only for prefill, 1K context for decode.
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::gated_retention::{gated_retention_cpu, RetentionInput, RetentionShape};
use kernels::window_attention::{window_attention_cpu, WindowInput, WindowShape};
use transformer::{KvCache, Transformer};
use yoco::{Cache, Config};

/// The Transformer YOCO is measured against (the paper's Table 1 comparison): the same width,
/// depth, FFN, vocabulary, RoPE θ and norm ε, every one of its `n_layers` layers full causal
/// attention with the cross-decoder's GQA heads and its own KV cache.
fn same_size_transformer(y: &Config) -> transformer::Config {
    let mut cfg = transformer::Config::dense(
        y.dim,
        y.n_layers,
        y.n_attn_heads,
        y.n_attn_kv_heads,
        y.hidden_dim,
        y.vocab_size,
    );
    cfg.rope_theta = y.rope_theta;
    cfg.rms_norm_eps = y.norm_eps;
    cfg
}

fn quick() -> bool {
    std::env::var_os("FRUGAL_BENCH_QUICK").is_some()
}

fn memory_table() {
    println!("Cache bytes (f32), batch 1: YOCO-3B (26 layers, dim 3072, 8 KV heads x 128) vs the same-size Transformer");
    println!(
        "{:>6} | {:>14} | {:>14} | {:>16} | {:>8} | {:>8}",
        "T", "YOCO gRet", "YOCO SWA-1024", "Transformer", "ratio", "ratio SWA"
    );
    let gret = Config::yoco_3b();
    let swa = Config {
        sliding_window: Some(1024),
        ..Config::yoco_3b()
    };
    let gib = |b: usize| format!("{:.3} GiB", b as f64 / (1u64 << 30) as f64);
    let mut too_large = None;
    let tcfg = same_size_transformer(&gret);
    for t in [4096usize, 32_768, 131_072] {
        let y = Cache::for_config(&gret, 1, t, &candle_core::Device::Cpu)
            .expect("cache")
            .bytes(0)
            .total();
        let s = Cache::for_config(&swa, 1, t, &candle_core::Device::Cpu)
            .expect("cache")
            .bytes(Cache::window_ring_bytes(&swa, 1))
            .total();
        // The Transformer's cache from its real object where this machine can hold it; past its
        // memory (the cache refuses to be made), from the size the made ones are checked to have:
        // layers · T · 2 (keys and values) · kv_heads · head_dim · 4 bytes.
        let formula = tcfg.num_hidden_layers * t * 2 * tcfg.kv_row() * 4;
        let (tr, mark) = match KvCache::new(&tcfg, 1, t, &candle_core::Device::Cpu) {
            Ok(cache) => {
                assert_eq!(
                    cache.bytes(),
                    formula,
                    "the Transformer's cache size at T = {t}"
                );
                (cache.bytes(), "")
            }
            Err(e) => {
                too_large = Some(e.to_string());
                (formula, "*")
            }
        };
        println!(
            "{:>6} | {:>14} | {:>14} | {:>16} | {:>7.1}x | {:>7.1}x",
            t,
            gib(y),
            gib(s),
            format!("{}{mark}", gib(tr)),
            tr as f64 / y as f64,
            tr as f64 / s as f64
        );
    }
    if let Some(e) = too_large {
        println!(
            "* not made here ({e}): its size by the formula the sizes above are checked against"
        );
    }
    println!();
}

fn small_config(sliding_window: Option<usize>) -> Config {
    Config {
        dim: 256,
        n_layers: 8,
        hidden_dim: 768,
        n_self_heads: 4,
        n_attn_heads: 4,
        n_attn_kv_heads: 2,
        vocab_size: 4096,
        max_batch_size: 1,
        max_seq_len: 16_384,
        model_parallel_size: 1,
        load_checkpoint: false,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        sliding_window,
    }
}

fn secs(f: impl FnOnce()) -> f64 {
    let s = Instant::now();
    f();
    s.elapsed().as_secs_f64()
}

fn speed_tables() {
    let cfg = small_config(None);
    let swa_cfg = small_config(Some(512));
    // Every weight N(0, 0.02) in f32 (a bare VarMap's zeros would be kept in bf16).
    let (yoco, _) = frugal_benches::random_f32_model(|vb| yoco::Model::new(&cfg, vb));
    let (swa, _) = frugal_benches::random_f32_model(|vb| yoco::Model::new(&swa_cfg, vb));
    let base_cfg = same_size_transformer(&cfg);
    let (base, _) = frugal_benches::random_f32_model(|vb| Transformer::new(&base_cfg, vb));
    let prompt = |t: usize| -> Vec<u32> { (0..t as u32).map(|i| (i * 7919) % 4096).collect() };

    println!(
        "Prefill (dim 256, 8 layers, 4 heads / 2 KV heads; YOCO: early exit, chunks of 32768)"
    );
    println!(
        "{:>6} | {:>10} | {:>12} | {:>14} | {:>8} | {:>8}",
        "T", "YOCO gRet s", "YOCO SWA-512 s", "Transformer s", "speed-up", "SWA"
    );
    let lengths: &[usize] = if quick() { &[2048] } else { &[2048, 8192] };
    for &t in lengths {
        let ids = prompt(t);
        let y = secs(|| {
            let mut c = yoco.new_cache(1, t).expect("cache");
            black_box(yoco.prefill(&[&ids], &mut c, 32_768).expect("prefill"));
        });
        let s = secs(|| {
            let mut c = swa.new_cache(1, t).expect("cache");
            black_box(swa.prefill(&[&ids], &mut c, 32_768).expect("prefill"));
        });
        let b = secs(|| {
            let mut c = base.new_cache(1, t).expect("cache");
            black_box(base.forward_last(&[&ids], &mut c).expect("prefill"));
        });
        println!(
            "{t:>6} | {y:>10.2} | {s:>12.2} | {b:>14.2} | {:>7.1}x | {:>7.1}x",
            b / y,
            b / s
        );
    }
    println!();

    let context = if quick() { 1024 } else { 4096 };
    let steps = 16;
    let ids = prompt(context);
    let mut yc = yoco.new_cache(1, context + steps).expect("cache");
    yoco.prefill(&[&ids], &mut yc, 32_768).expect("prefill");
    let mut sc = swa.new_cache(1, context + steps).expect("cache");
    swa.prefill(&[&ids], &mut sc, 32_768).expect("prefill");
    let mut bc = base.new_cache(1, context + steps).expect("cache");
    base.forward_last(&[&ids], &mut bc).expect("prefill");
    let y = secs(|| {
        for i in 0..steps {
            black_box(yoco.forward_last(&[[i as u32]], &mut yc).expect("step"));
        }
    });
    let s = secs(|| {
        for i in 0..steps {
            black_box(swa.forward_last(&[[i as u32]], &mut sc).expect("step"));
        }
    });
    let b = secs(|| {
        for i in 0..steps {
            let tok = [i as u32];
            black_box(base.forward_last(&[&tok], &mut bc).expect("step"));
        }
    });
    let tps = |s: f64| steps as f64 / s;
    println!(
        "Decode after {context} tokens: YOCO gRet {:.1} tok/s, YOCO SWA-512 {:.1} tok/s, Transformer {:.1} tok/s: {:.2}x / {:.2}x",
        tps(y),
        tps(s),
        tps(b),
        b / y,
        b / s
    );
    println!();
}

fn tables(_: &mut Criterion) {
    frugal_benches::pin_threads();
    memory_table();
    speed_tables();
}

fn kernels(c: &mut Criterion) {
    let t = 2048;
    let (h, d) = (8, 64);
    let n = t * h * d;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut g = c.benchmark_group("yoco_kernels");
    g.sample_size(10);
    g.throughput(Throughput::Elements(t as u64));
    for window in [Some(512), None] {
        let shape = WindowShape {
            batch: 1,
            q_len: t,
            k_len: t,
            heads: h,
            kv_heads: h,
            head_dim: d,
            q_offset: 0,
            k_offset: 0,
            window,
        };
        let name = window.map_or("window_attention/causal".to_string(), |w| {
            format!("window_attention/w{w}")
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                window_attention_cpu(&WindowInput {
                    shape,
                    q: &x,
                    k: &x,
                    v: &x,
                    scale: 0.125,
                })
                .expect("shape")
            })
        });
    }
    let decay: Vec<f32> = (0..t * h).map(|i| -0.01 * (1 + i % 7) as f32).collect();
    let shape = RetentionShape::new(1, t, h, d, d).expect("shape");
    g.bench_function("gated_retention/chunkwise", |b| {
        b.iter(|| {
            gated_retention_cpu(&RetentionInput {
                shape,
                q: &x,
                k: &x,
                v: &x,
                log_decay: &decay,
                state: None,
            })
            .expect("shape")
        })
    });
    g.finish();
}

criterion_group!(yoco_benches, tables, kernels);
criterion_main!(yoco_benches);
