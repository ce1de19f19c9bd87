//! Smart Bird's kernels on a real GPU against the CPU references. Prints `SKIPPED: no CUDA
//! device` where there is none (and fails instead under `cargo xtask test-gpu`).
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::gpu::sparse_attention::{sketch_topk_gpu, sparse_attention_gpu};
use kernels::gpu::test_context;
use kernels::sparse_attention::{
    sketch_topk_reference, sparse_attention_reference, SketchTopk, SparseInput, SparseShape,
};

#[test]
fn gpu_sparse_attention_and_selection_match_reference() {
    let Some(ctx) = test_context("gpu_sparse_attention_and_selection_match_reference") else {
        return;
    };
    let stream = ctx.default_stream();
    for (case, &(batch, n, heads, d, keys)) in
        [(1, 1, 1, 1, 1), (2, 77, 3, 33, 9), (1, 2048, 8, 64, 64)]
            .iter()
            .enumerate()
    {
        let mut rng = Rng::new(case as u64);
        let lp: Vec<f32> = (0..batch * n * n).map(|_| rng.uniform(-8.0, 0.0)).collect();
        let mask: Vec<u8> = (0..batch * n)
            .map(|x| u8::from(x % n < n - (x / n) * 3 % n.max(1)))
            .collect();
        let sel = SketchTopk {
            batch,
            seq_len: n,
            heads,
            keys,
            log_probs: &lp,
            mask: Some(&mask),
            gumbel_seed: Some(11),
            include_self: true,
        };
        let want = sketch_topk_reference(&sel).unwrap();
        let shape = SparseShape::new(batch, n, heads, d, keys).unwrap();
        let idx = sketch_topk_gpu(
            &stream,
            shape,
            &stream.clone_htod(&lp).unwrap(),
            Some(&stream.clone_htod(&mask).unwrap().as_view()),
            Some(11),
            true,
        )
        .unwrap();
        let got = stream.clone_dtoh(&idx).unwrap();
        // The GPU's logf may differ from the host's by an ulp, which can swap near-tied keys:
        // demand 99% of rows identical.
        let same = got
            .chunks(keys)
            .zip(want.chunks(keys))
            .filter(|(a, b)| a == b)
            .count();
        let rows = got.len() / keys;
        assert!(
            same * 100 >= rows * 99,
            "case {case}: {same} of {rows} rows identical"
        );

        let mut vec = |len: usize| {
            (0..len)
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect::<Vec<f32>>()
        };
        let (q, k, v) = (vec(shape.elems()), vec(shape.elems()), vec(shape.elems()));
        let scale = (d as f32).powf(-0.5);
        let reference = sparse_attention_reference(&SparseInput {
            shape,
            q: &q,
            k: &k,
            v: &v,
            indices: &got,
            scale,
        })
        .unwrap();
        let up = |x: &[f32]| stream.clone_htod(x).unwrap();
        let o =
            sparse_attention_gpu(&stream, shape, &up(&q), &up(&k), &up(&v), &idx, scale).unwrap();
        let o = stream.clone_dtoh(&o).unwrap();
        for (i, (g, w)) in o.iter().zip(&reference).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "case {case} [{i}]: {g} vs {w}"
            );
        }
    }
}
