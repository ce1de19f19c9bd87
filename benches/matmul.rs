//! The prefill's products (`kernels::cpu_linear::matmul`, `x [m, k] · w [n, k]ᵀ`) against
//! candle's f32 matmul (the `gemm` crate) on the same values, at the row counts a prompt brings
//! (16 to 2048 tokens) and the widths of this project's models. bf16 weights (whose values are the
//! f32 ones rounded; the f32 matrix of those values is what candle gets) are widened inside our
//! product. Both run on the same 2-thread rayon pool, medians of 7, in turns.
//!
//! Prints one table: GFLOP/s of each and the ratios. Where the machine lacks AVX-512 our f32
//! product is `gemm` itself (ratio ~1) and it says so. `FRUGAL_BENCH_QUICK=1` changes nothing.
use std::hint::black_box;

use candle_core::{Device, Tensor};
use frugal_benches::median_secs;
use kernels::cpu_linear::{matmul, Weights};

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0)
        .collect()
}

fn main() {
    frugal_benches::pin_threads();
    println!(
        "AVX-512 product here: {}",
        if kernels::cpu_gemm::available() {
            "yes"
        } else {
            "no (f32 takes gemm, as candle does)"
        }
    );
    println!("m × n × k         | candle f32 | ours f32 (×)  | ours bf16 (×) GFLOP/s");
    for (m, n, k) in [
        (16, 768, 256),
        (64, 3072, 512),
        (128, 512, 1536),
        (256, 640, 512),
        (384, 1024, 512),
        (512, 3072, 512),
        (2048, 3072, 512),
    ] {
        let x = values(m * k, 1);
        // bf16-exact f32 values: the same matrix in either dtype.
        let wb: Vec<half::bf16> = values(n * k, 2)
            .into_iter()
            .map(half::bf16::from_f32)
            .collect();
        let w: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).expect("x");
        let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu)
            .and_then(|t| t.t())
            .expect("w");
        let flops = 2.0 * (m * n * k) as f64;
        let (candle, ours, ours_bf16) = layers::pool::on_pool(|| {
            let candle = median_secs(7, || {
                black_box(xt.matmul(&wt).expect("candle"));
            });
            let ours = median_secs(7, || {
                black_box(matmul(&x, m, Weights::F32(&w), n, k, None).expect("ours"));
            });
            let ours_bf16 = median_secs(7, || {
                black_box(matmul(&x, m, Weights::Bf16(&wb), n, k, None).expect("ours bf16"));
            });
            (candle, ours, ours_bf16)
        });
        let rate = |s: f64| flops / s / 1e9;
        println!(
            "{:<17} | {:>10.1} | {:>6.1} ({:.2}) | {:>6.1} ({:.2})",
            format!("{m} × {n} × {k}"),
            rate(candle),
            rate(ours),
            candle / ours,
            rate(ours_bf16),
            candle / ours_bf16
        );
    }
}
