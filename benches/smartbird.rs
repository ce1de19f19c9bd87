//! Smart Bird against dense multi-head attention of the same size (the same model run with
//! `AttentionMode::Dense`: identical weights, projections, FFN and pooling), one run.
//!
//! Printed: encoder forward time at N = 512, 2048, 8192 for K = 32 and 64 (hidden 256, 4 heads,
//! 2 layers, sketch dim 16, Gumbel-top-K), the dense time, their ratio, and the share of Smart
//! Bird's attention time spent in the sketch and in the per-head selection, medians of three runs.
//! Then criterion times the sparse-attention kernel and the selection alone.
//! `FRUGAL_BENCH_QUICK=1`: N = 512 and 2048 only.
use std::hint::black_box;
use std::time::Instant;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernels::sparse_attention::{
    sketch_topk_cpu, sparse_attention_cpu, SketchTopk, SparseInput, SparseShape,
};
use smartbird::{AttentionMode, Config, Model, Sampling};

fn config(n: usize, keys: usize) -> Config {
    Config {
        hidden_size: 256,
        num_attention_heads: 4,
        num_hidden_layers: 2,
        intermediate_size: 1024,
        max_position_embeddings: n,
        vocab_size: 1000,
        layer_norm_eps: 1e-12,
        num_labels: 2,
        pad_token_id: 0,
        sketch_dim: 16,
        keys_per_query: keys,
        sampling: Sampling::Gumbel,
        seed: 1,
        include_self: false,
    }
}

/// The run with the median time of three, with what it returned.
fn median_of_3<T>(mut run: impl FnMut() -> (f64, T)) -> (f64, T) {
    let mut runs: Vec<(f64, T)> = (0..3).map(|_| run()).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs.swap_remove(1)
}

fn table(_: &mut Criterion) {
    frugal_benches::pin_threads();
    let quick = std::env::var_os("FRUGAL_BENCH_QUICK").is_some();
    let lengths: &[usize] = if quick {
        &[512, 2048]
    } else {
        &[512, 2048, 8192]
    };
    println!("Smart Bird vs dense attention (hidden 256, 4 heads, 2 layers, sketch 16), batch 1, seconds");
    println!(
        "{:>5} | {:>3} | {:>10} | {:>9} | {:>8} | {:>12} | {:>15}",
        "N", "K", "Smart Bird", "dense", "speed-up", "sketch share", "selection share"
    );
    for &n in lengths {
        let ids = vec![(0..n as u32)
            .map(|i| 1 + (i * 7919) % 999)
            .collect::<Vec<u32>>()];
        let mut dense_secs = None;
        for keys in [32, 64] {
            let (model, _) = Model::random(&config(n, keys), &Device::Cpu).expect("model");
            // Medians of three runs each: a single timing moved by a fifth between runs.
            let dense = *dense_secs.get_or_insert_with(|| {
                median_of_3(|| {
                    let s = Instant::now();
                    black_box(
                        model
                            .forward_with(&ids, AttentionMode::Dense)
                            .expect("dense"),
                    );
                    (s.elapsed().as_secs_f64(), ())
                })
                .0
            });
            let (sparse, p) = median_of_3(|| {
                let s = Instant::now();
                let out = model.forward(&ids).expect("sparse");
                (s.elapsed().as_secs_f64(), out.profile)
            });
            let attn = p.sketch + p.selection + p.attention;
            println!(
                "{n:>5} | {keys:>3} | {sparse:>10.3} | {dense:>9.3} | {:>7.2}x | {:>11.0}% | {:>14.0}%",
                dense / sparse,
                100.0 * p.sketch / attn,
                100.0 * p.selection / attn
            );
        }
    }
    println!();
}

fn kernel(c: &mut Criterion) {
    let (n, heads, d, keys) = (2048, 4, 64, 64);
    let shape = SparseShape::new(1, n, heads, d, keys).expect("shape");
    let x: Vec<f32> = (0..shape.elems())
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let idx: Vec<i32> = (0..shape.index_len())
        .map(|i| ((i * 31) % n) as i32)
        .collect();
    let mut g = c.benchmark_group("smartbird_kernels");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("sparse_attention/n2048_k64", |b| {
        b.iter(|| {
            sparse_attention_cpu(&SparseInput {
                shape,
                q: &x,
                k: &x,
                v: &x,
                indices: &idx,
                scale: 0.125,
            })
            .expect("shape")
        })
    });
    // The per-head Gumbel-top-K from a sketch's log-probabilities (a softmax over random scores).
    let log_probs: Vec<f32> = (0..n)
        .flat_map(|i| {
            let row: Vec<f32> = (0..n)
                .map(|j| (((i * 131 + j * 7919) % 1009) as f32 / 1009.0 - 0.5) * 6.0)
                .collect();
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let lse = max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
            row.into_iter().map(move |x| x - lse)
        })
        .collect();
    g.bench_function("sketch_topk_gumbel/n2048_k64", |b| {
        b.iter(|| {
            sketch_topk_cpu(&SketchTopk {
                batch: 1,
                seq_len: n,
                heads,
                keys,
                log_probs: &log_probs,
                mask: None,
                gumbel_seed: Some(7),
                include_self: false,
            })
            .expect("shape")
        })
    });
    g.finish();
}

criterion_group!(smartbird_benches, table, kernel);
criterion_main!(smartbird_benches);
