//! The decode GEMV (`kernels::cpu_linear::gemv`): every matrix of the dense baseline's decode step
//! back to back, as `frugal compare --size small` and `cargo xtask vs-llamacpp` run it (hidden
//! 256, 4 layers, 4/2 heads, FFN 768, vocabulary 4096: 21 matrices, 16.8 MB of f32), on a pool
//! thread as the model runs them, beside reading the same bytes with the same threads.
//!
//! Printed, medians of 5: one pass with the weights in the last-level cache (one copy, passed
//! over again and again) and from memory (four copies, 67 MB, taken in turn). Then criterion
//! times single GEMVs. `FRUGAL_BENCH_QUICK=1` changes nothing here (the table takes seconds).
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frugal_benches::median_secs;

/// `[rows, cols]` of one decode step's matrices: per layer `[q; k; v]`, `o`, `[gate; up]`,
/// `down`; then the output head.
fn baseline_shapes() -> Vec<(usize, usize)> {
    (0..4)
        .flat_map(|_| [(512, 256), (256, 256), (1536, 256), (256, 768)])
        .chain([(4096, 256)])
        .collect()
}

fn matrices(shapes: &[(usize, usize)], seed: usize) -> Vec<Vec<f32>> {
    shapes
        .iter()
        .map(|&(n, k)| {
            (0..n * k)
                .map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0)
                .collect()
        })
        .collect()
}

/// Sums `xs` in 32 lanes (four vectors of eight: the loop vectorises, and four independent
/// chains of additions keep ahead of their latency): a pure read of its bytes.
fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 32];
    for c in xs.chunks_exact(32) {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

fn table() {
    frugal_benches::pin_threads();
    let shapes = baseline_shapes();
    let bytes: usize = shapes.iter().map(|&(n, k)| 4 * n * k).sum();
    let x: Vec<f32> = (0..768).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    println!(
        "The dense baseline's decode GEMVs ({} matrices, {:.1} MB of f32), one pass, {} threads",
        shapes.len(),
        bytes as f64 / 1e6,
        rayon::current_num_threads()
    );
    for copies in [1usize, 4] {
        let sets: Vec<Vec<Vec<f32>>> = (0..copies).map(|c| matrices(&shapes, c)).collect();
        let mut turn = 0;
        let (gemv, read) = layers::pool::on_pool(|| {
            let gemv = median_secs(5, || {
                for _ in 0..20 {
                    turn = (turn + 1) % copies;
                    for (w, &(n, k)) in sets[turn].iter().zip(&shapes) {
                        black_box(kernels::cpu_linear::gemv(&x[..k], 1, w, n, k).expect("gemv"));
                    }
                }
            }) / 20.0;
            let read = median_secs(5, || {
                for _ in 0..20 {
                    turn = (turn + 1) % copies;
                    for w in &sets[turn] {
                        let (a, b) = w.split_at(w.len() / 2);
                        black_box(rayon::join(|| lane_sum(a), || lane_sum(b)));
                    }
                }
            }) / 20.0;
            (gemv, read)
        });
        println!(
            "{:>13}: GEMVs {:.1} us ({:.1} GB/s), reading the bytes {:.1} us ({:.1} GB/s): {:.2} of the read",
            if copies == 1 { "in cache" } else { "from memory" },
            gemv * 1e6,
            bytes as f64 / gemv / 1e9,
            read * 1e6,
            bytes as f64 / read / 1e9,
            read / gemv
        );
    }
    println!();
}

fn bench(c: &mut Criterion) {
    table();
    let mut g = c.benchmark_group("decode_gemv");
    g.sample_size(20);
    for (n, k) in [(1536, 256), (256, 768), (4096, 256)] {
        let w: Vec<f32> = matrices(&[(n, k)], 0).remove(0);
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let x: Vec<f32> = (0..k).map(|i| (i % 13) as f32 / 13.0).collect();
        g.throughput(Throughput::Bytes((4 * n * k) as u64));
        // On a pool thread throughout, as a model's forward pass calls it.
        g.bench_function(format!("f32_{n}x{k}"), |b| {
            layers::pool::on_pool(|| b.iter(|| kernels::cpu_linear::gemv(&x, 1, &w, n, k)))
        });
        g.throughput(Throughput::Bytes((2 * n * k) as u64));
        g.bench_function(format!("bf16_{n}x{k}"), |b| {
            layers::pool::on_pool(|| b.iter(|| kernels::cpu_linear::gemv_bf16(&x, 1, &wb, n, k)))
        });
    }
    g.finish();
}

criterion_group!(gemv_benches, bench);
criterion_main!(gemv_benches);
