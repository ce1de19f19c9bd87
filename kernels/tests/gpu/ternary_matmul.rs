//! The ternary-matmul PTX on a real GPU against the CPU reference, bit for bit. Prints `SKIPPED:
//! no CUDA device` where there is none (and fails instead under `cargo xtask test-gpu`).
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::common::Rng;
use kernels::gpu::ternary_matmul::{ternary_matmul_gpu, DeviceTernary};
use kernels::gpu::test_context;
use kernels::ternary_matmul::{ternary_matmul_reference, PackedTernary};

#[test]
fn gpu_ternary_matmul_matches_reference() {
    let Some(ctx) = test_context("gpu_ternary_matmul_matches_reference") else {
        return;
    };
    let stream = ctx.default_stream();
    // GEMV (m ≤ 4) and GEMM shapes, odd sizes and BitNet 2B4T's.
    for (i, &(m, n, k)) in [
        (1, 1, 1),
        (1, 33, 129),
        (3, 65, 300),
        (5, 7, 127),
        (70, 130, 385),
        (1, 2560, 2560),
        (1, 6912, 2560),
        (1, 2560, 6912),
        (128, 2560, 2560),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(i as u64);
        let t: Vec<i8> = (0..n * k).map(|_| (rng.next_u64() % 3) as i8 - 1).collect();
        let w = PackedTernary::from_ternary(&t, n, k, 0.021).unwrap();
        let x: Vec<f32> = (0..m * k).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let want = ternary_matmul_reference(&x, m, &w).unwrap();
        let dw = DeviceTernary::upload(&stream, &w).unwrap();
        let dx = stream.clone_htod(&x).unwrap();
        let y = ternary_matmul_gpu(&stream, &dx, m, &dw).unwrap();
        let got = stream.clone_dtoh(&y).unwrap();
        assert_eq!(got, want, "m {m} n {n} k {k}");
    }
}
