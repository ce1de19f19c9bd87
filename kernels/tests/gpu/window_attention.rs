//! The window-attention and gated-retention PTX on a real GPU against the CPU references. Prints
//! `SKIPPED: no CUDA device` where there is none (and fails instead under `cargo xtask test-gpu`).
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::gated_retention::{gated_retention_reference, RetentionInput, RetentionShape};
use kernels::gpu::gated_retention::gated_retention_gpu;
use kernels::gpu::test_context;
use kernels::gpu::window_attention::window_attention_gpu;
use kernels::window_attention::{window_attention_reference, WindowInput, WindowShape};

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn gpu_window_attention_matches_reference() {
    let Some(ctx) = test_context("gpu_window_attention_matches_reference") else {
        return;
    };
    let stream = ctx.default_stream();
    for (i, &(b, q_len, k_len, h, hk, d, window)) in [
        (1, 1, 1, 1, 1, 1, None),
        (2, 37, 37, 4, 2, 33, Some(5)),
        (1, 300, 300, 8, 2, 128, Some(64)),
        (1, 1, 4096, 24, 8, 128, None),
        (1, 1000, 1000, 4, 4, 64, None),
    ]
    .iter()
    .enumerate()
    {
        let shape = WindowShape {
            batch: b,
            q_len,
            k_len,
            heads: h,
            kv_heads: hk,
            head_dim: d,
            q_offset: k_len - q_len,
            k_offset: 0,
            window,
        };
        let mut rng = Rng::new(i as u64);
        let mut vec = |n: usize| (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect::<Vec<f32>>();
        let (q, k, v) = (
            vec(shape.q_elems()),
            vec(shape.kv_elems()),
            vec(shape.kv_elems()),
        );
        let scale = (d as f32).powf(-0.5);
        let want = window_attention_reference(&WindowInput {
            shape,
            q: &q,
            k: &k,
            v: &v,
            scale,
        })
        .unwrap();
        let up = |x: &[f32]| stream.clone_htod(x).unwrap();
        let o = window_attention_gpu(&stream, shape, &up(&q), &up(&k), &up(&v), scale).unwrap();
        close(
            &shape.to_string(),
            &stream.clone_dtoh(&o).unwrap(),
            &want,
            1e-4,
        );
    }
}

#[test]
fn gpu_gated_retention_matches_reference() {
    let Some(ctx) = test_context("gpu_gated_retention_matches_reference") else {
        return;
    };
    let stream = ctx.default_stream();
    for (i, &(b, t, h, dk, dv)) in [(1, 1, 1, 1, 1), (2, 77, 3, 33, 40), (1, 1000, 4, 128, 128)]
        .iter()
        .enumerate()
    {
        let shape = RetentionShape::new(b, t, h, dk, dv).unwrap();
        let mut rng = Rng::new(i as u64);
        let rows = b * t * h;
        let mut vec = |n: usize, s: f32| {
            (0..n)
                .map(|_| rng.uniform(-1.0, 1.0) * s)
                .collect::<Vec<f32>>()
        };
        let (q, k, v) = (
            vec(rows * dk, 1.0),
            vec(rows * dk, (dk as f32).powf(-0.5)),
            vec(rows * dv, 1.0),
        );
        let g: Vec<f32> = vec(rows, 1.0).iter().map(|x| -0.05 * (1.0 + x)).collect();
        let s0 = vec(shape.state_len(), 1.0);
        let want = gated_retention_reference(&RetentionInput {
            shape,
            q: &q,
            k: &k,
            v: &v,
            log_decay: &g,
            state: Some(&s0),
        })
        .unwrap();
        let up = |x: &[f32]| stream.clone_htod(x).unwrap();
        let (o, st) = gated_retention_gpu(
            &stream,
            shape,
            &up(&q),
            &up(&k),
            &up(&v),
            &up(&g),
            Some(&up(&s0).as_view()),
        )
        .unwrap();
        close("o", &stream.clone_dtoh(&o).unwrap(), &want.o, 1e-3);
        close("state", &stream.clone_dtoh(&st).unwrap(), &want.state, 1e-3);
    }
}
