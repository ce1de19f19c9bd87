//! Window attention: the fast CPU path and the CUDA kernel (emulated) against the reference on odd
//! shapes, windows larger than the sequence, offsets (chunked prefill, decoding), one head and
//! many KV groups.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::params::FrugalWindowAttentionParams;
use kernels::window_attention::plan::plan;
use kernels::window_attention::{
    window_attention_cpu, window_attention_reference, WindowInput, WindowShape,
};
use kernels::KernelError;
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn shape(
    batch: usize,
    q_len: usize,
    k_len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    k_offset: usize,
    window: Option<usize>,
) -> WindowShape {
    WindowShape {
        batch,
        q_len,
        k_len,
        heads,
        kv_heads,
        head_dim,
        // Queries are the last q_len key positions (prefill chunk or decode step).
        q_offset: k_offset + k_len - q_len,
        k_offset,
        window,
    }
}

struct Case {
    shape: WindowShape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn new(shape: WindowShape, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut vec = |n: usize| (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect::<Vec<f32>>();
        Case {
            q: vec(shape.q_elems()),
            k: vec(shape.kv_elems()),
            v: vec(shape.kv_elems()),
            shape,
        }
    }

    fn input(&self) -> WindowInput<'_> {
        WindowInput {
            shape: self.shape,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            scale: (self.shape.head_dim as f32).powf(-0.5),
        }
    }
}

fn shapes() -> Vec<WindowShape> {
    vec![
        shape(1, 1, 1, 1, 1, 1, 0, None),
        shape(1, 20, 20, 4, 2, 16, 0, Some(4)),
        shape(2, 37, 37, 3, 1, 33, 0, Some(100)), // window past the sequence
        shape(1, 70, 70, 8, 2, 64, 0, None),      // causal, several key tiles
        shape(1, 9, 40, 4, 4, 16, 5, Some(7)),    // a prefill chunk after cached keys
        shape(3, 1, 57, 6, 3, 128, 0, None),      // decode step, head_dim 128
        shape(1, 1, 8, 2, 1, 24, 100, Some(8)),   // decode against a window ring
        shape(1, 33, 33, 16, 1, 8, 0, Some(1)),   // window 1: itself only
        shape(1, 5, 300, 4, 2, 67, 0, None),      // many key blocks, head_dim not a multiple of 8
        shape(2, 130, 130, 2, 1, 40, 0, Some(90)), // windows across block boundaries
        shape(1, 45, 200, 6, 2, 48, 7, Some(70)), // a long prefill chunk after cached keys
        shape(1, 64, 64, 4, 4, 16, 0, None),      // tiles of several rows, no grouping
    ]
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn fast_path_matches_reference() {
    for (i, s) in shapes().into_iter().enumerate() {
        let c = Case::new(s, i as u64);
        let want = window_attention_reference(&c.input()).unwrap();
        assert_close(
            &s.to_string(),
            &window_attention_cpu(&c.input()).unwrap(),
            &want,
            2e-5,
        );
    }
}

#[test]
fn window_one_returns_the_own_value_and_a_wide_window_is_causal() {
    let s = shape(1, 5, 5, 2, 1, 4, 0, Some(1));
    let c = Case::new(s, 3);
    let o = window_attention_cpu(&c.input()).unwrap();
    for i in 0..5 {
        for h in 0..2 {
            assert_eq!(
                &o[(i * 2 + h) * 4..][..4],
                &c.v[i * 4..][..4],
                "query {i} head {h}"
            );
        }
    }
    let wide = Case::new(shape(1, 12, 12, 2, 2, 8, 0, Some(1000)), 4);
    let mut causal = Case::new(shape(1, 12, 12, 2, 2, 8, 0, None), 4);
    causal.q.clone_from(&wide.q);
    assert_eq!(
        window_attention_cpu(&wide.input()).unwrap(),
        window_attention_cpu(&causal.input()).unwrap()
    );
}

fn emulated(c: &Case) -> Vec<f32> {
    let s = c.shape;
    let l = plan(s).unwrap();
    let mut o = vec![f32::NAN; s.q_elems()];
    let params = FrugalWindowAttentionParams {
        q: c.q.as_ptr(),
        k: c.k.as_ptr(),
        v: c.v.as_ptr(),
        o: o.as_mut_ptr(),
        scale: (s.head_dim as f32).powf(-0.5),
        batch: s.batch as i32,
        q_len: s.q_len as i32,
        k_len: s.k_len as i32,
        heads: s.heads as i32,
        kv_heads: s.kv_heads as i32,
        head_dim: s.head_dim as i32,
        q_offset: s.q_offset as i32,
        k_offset: s.k_offset as i32,
        window: s.window.map_or(0, |w| w as i32),
    };
    // SAFETY: host buffers sized for the shape.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &params) }.unwrap();
    o
}

#[test]
fn emulated_cuda_matches_reference() {
    for (i, s) in shapes().into_iter().enumerate() {
        let c = Case::new(s, 10 + i as u64);
        let want = window_attention_reference(&c.input()).unwrap();
        assert_close(&format!("emulated {s}"), &emulated(&c), &want, 2e-5);
    }
}

/// `window_attention_cpu` on a rayon pool of `threads` threads.
fn fast_on(threads: usize, c: &Case) -> Vec<f32> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| window_attention_cpu(&c.input()).unwrap())
}

/// Decoding with fewer query rows than threads splits each row's keys into one range per task
/// and merges the partial softmax states: the same result on any number of threads, for ranges
/// that start inside a window, rows of several sequences and KV groups.
#[test]
fn decoding_split_over_threads_matches_reference() {
    for (i, s) in [
        shape(1, 1, 700, 4, 2, 64, 0, None),
        shape(2, 1, 1000, 4, 1, 67, 3, Some(333)),
        shape(3, 2, 513, 6, 3, 32, 0, None),
        shape(1, 1, 300, 8, 8, 40, 0, Some(260)),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Case::new(s, 50 + i as u64);
        let want = window_attention_reference(&c.input()).unwrap();
        for threads in [1, 2, 3, 8] {
            assert_close(
                &format!("{s} on {threads} threads"),
                &fast_on(threads, &c),
                &want,
                2e-5,
            );
        }
    }
}

/// A half-precision KV cache (f16 or bf16) gives exactly what the f32 path gives on the same
/// values widened: decode steps (split over threads or not), prefill tiles, and a cache with
/// capacity past the last query (its unwritten rows never read).
#[test]
fn half_precision_keys_and_values_match_f32_on_their_values_exactly() {
    fn check<E: kernels::cpu::KvElem>(
        name: &str,
        narrow: impl Fn(f32) -> E,
        widen: impl Fn(E) -> f32,
    ) {
        let mut all = shapes();
        all.extend([
            shape(1, 1, 700, 4, 2, 64, 0, None),
            shape(2, 1, 1000, 4, 1, 67, 3, Some(333)),
            shape(3, 2, 513, 6, 3, 32, 0, None),
        ]);
        // Queries at positions 20..52 of a 100-position cache.
        all.push(WindowShape {
            q_offset: 20,
            ..shape(2, 32, 100, 4, 2, 24, 0, Some(17))
        });
        all.push(WindowShape {
            q_offset: 60,
            ..shape(1, 1, 300, 4, 2, 64, 0, None)
        });
        for (i, s) in all.into_iter().enumerate() {
            let c = Case::new(s, 900 + i as u64);
            let half_k: Vec<E> = c.k.iter().map(|&x| narrow(x)).collect();
            let half_v: Vec<E> = c.v.iter().map(|&x| narrow(x)).collect();
            let wide = Case {
                k: half_k.iter().map(|&x| widen(x)).collect(),
                v: half_v.iter().map(|&x| widen(x)).collect(),
                q: c.q.clone(),
                shape: s,
            };
            assert_ne!(wide.k, c.k, "{name} {s}: the values were rounded");
            let half = WindowInput {
                shape: s,
                q: &c.q,
                k: &half_k[..],
                v: &half_v[..],
                scale: wide.input().scale,
            };
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| window_attention_cpu(&half).unwrap());
                let want = pool.install(|| window_attention_cpu(&wide.input()).unwrap());
                assert_eq!(got, want, "{name} {s} on {threads} threads");
            }
        }
    }
    check("f16", half::f16::from_f32, half::f16::to_f32);
    check("bf16", half::bf16::from_f32, half::bf16::to_f32);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn fast_and_emulated_match_reference_on_random_shapes(
        batch in 1usize..3, k_len in 1usize..50, q_frac in 0.0f64..1.0, kv in 1usize..3,
        group in 1usize..4, head_dim in 1usize..40, offset in 0usize..20,
        window in proptest::option::of(1usize..30), seed in 0u64..1000,
    ) {
        let q_len = ((k_len as f64 * q_frac) as usize).clamp(1, k_len);
        let s = shape(batch, q_len, k_len, kv * group, kv, head_dim, offset, window);
        let c = Case::new(s, seed);
        let want = window_attention_reference(&c.input()).unwrap();
        assert_close("fast", &window_attention_cpu(&c.input()).unwrap(), &want, 2e-5);
        assert_close("emulated", &emulated(&c), &want, 2e-5);
    }

    /// Decode steps long enough to split, on pools of 2 to 6 threads.
    #[test]
    fn split_decoding_matches_reference_on_random_shapes(
        batch in 1usize..3, k_len in 150usize..1200, q_len in 1usize..3, kv in 1usize..3,
        group in 1usize..4, head_dim in 24usize..70, window in proptest::option::of(100usize..900),
        threads in 2usize..7, seed in 0u64..1000,
    ) {
        let s = shape(batch, q_len, k_len, kv * group, kv, head_dim, 0, window);
        let c = Case::new(s, seed);
        let want = window_attention_reference(&c.input()).unwrap();
        assert_close("split", &fast_on(threads, &c), &want, 2e-5);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let mut s = shape(1, 4, 4, 3, 2, 8, 0, None);
    assert!(
        matches!(s.validate(), Err(KernelError::Invalid { .. })),
        "3 heads over 2 kv heads"
    );
    s = shape(1, 4, 4, 2, 2, 8, 0, None);
    s.q_offset = 2; // queries at 2..6, keys at 0..4
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("not all among the keys"), "{e}");
    s = shape(1, 4, 4, 2, 2, 8, 0, Some(0));
    assert!(matches!(s.validate(), Err(KernelError::Empty { .. })));
    let c = Case::new(shape(1, 4, 4, 2, 2, 8, 0, None), 1);
    let mut input = c.input();
    input.k = &c.k[1..];
    assert!(matches!(
        window_attention_cpu(&input),
        Err(KernelError::Length { .. })
    ));
    let big = shape(1, 1, 1, 1, 1, 129, 0, None);
    assert!(matches!(plan(big), Err(KernelError::TooLarge { .. })));
}
