//! The additive-attention PTX on a real GPU against the CPU reference. Prints `SKIPPED: no CUDA
//! device` where there is none (and fails instead under `cargo xtask test-gpu`).
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::common::Rng;
use kernels::additive_attention::{
    additive_attention_reference, AdditiveInput, AdditiveShape, ScoreForm,
};
use kernels::gpu::additive_attention::{launch, DevicePointers};
use kernels::gpu::test_context;

#[test]
fn gpu_additive_attention_matches_reference() {
    let Some(ctx) = test_context("gpu_additive_attention_matches_reference") else {
        return;
    };
    let stream = ctx.default_stream();
    for (i, &(b, t, h, d, form)) in [
        (1, 1, 1, 1, ScoreForm::Full),
        (2, 333, 4, 16, ScoreForm::Full),
        (3, 1000, 3, 33, ScoreForm::PerHead),
        (1, 8192, 16, 16, ScoreForm::Full),
    ]
    .iter()
    .enumerate()
    {
        let shape = AdditiveShape::new(b, t, h, d).unwrap();
        let mut rng = Rng::new(i as u64);
        let mut vec = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect() };
        let width = if form == ScoreForm::Full {
            shape.hidden()
        } else {
            d
        };
        let (q, k, v) = (vec(shape.len()), vec(shape.len()), vec(shape.len()));
        let (wq, wk, bq, bk) = (vec(h * width), vec(h * width), vec(h), vec(h));
        let mask: Vec<f32> = (0..b * t)
            .map(|j| {
                if j % t < t.div_ceil(2) || j / t == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let input = AdditiveInput {
            shape,
            form,
            q: &q,
            k: &k,
            v: &v,
            mask: Some(&mask),
            wq: &wq,
            bq: Some(&bq),
            wk: &wk,
            bk: Some(&bk),
        };
        let want = additive_attention_reference(&input).unwrap();
        let up = |x: &[f32]| stream.clone_htod(x).unwrap();
        let bufs = [
            up(&q),
            up(&k),
            up(&v),
            up(&mask),
            up(&wq),
            up(&bq),
            up(&wk),
            up(&bk),
        ];
        use cudarc::driver::DevicePtr;
        let ptr = |s: &cudarc::driver::CudaSlice<f32>| s.device_ptr(&stream).0;
        let p = DevicePointers {
            q: ptr(&bufs[0]),
            k: ptr(&bufs[1]),
            v: ptr(&bufs[2]),
            mask: Some(ptr(&bufs[3])),
            wq: ptr(&bufs[4]),
            bq: Some(ptr(&bufs[5])),
            wk: ptr(&bufs[6]),
            bk: Some(ptr(&bufs[7])),
        };
        // SAFETY: the buffers above live until after the copies back, sized by `shape`.
        let (u, pq, pk) = unsafe { launch(&stream, shape, form, &p) }.unwrap();
        for (name, got, w) in [
            ("u", stream.clone_dtoh(&u).unwrap(), &want.u),
            ("pooled_q", stream.clone_dtoh(&pq).unwrap(), &want.pooled_q),
            ("pooled_k", stream.clone_dtoh(&pk).unwrap(), &want.pooled_k),
        ] {
            for (j, (a, b)) in got.iter().zip(w.iter()).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                    "gpu {shape} {name}[{j}] = {a}, reference {b}"
                );
            }
        }
    }
}
