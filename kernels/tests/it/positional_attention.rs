//! Positional attention (explicit key and query positions): equal to window attention when the
//! positions are contiguous, invariant under reordering the keys with their positions (a ring
//! buffer), and the fast path equal to its reference on random positions, empty slots and padding.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::window_attention::{
    positional_attention_cpu, positional_attention_reference, window_attention_reference,
    PositionalInput, WindowInput, WindowShape,
};
use proptest::prelude::*;

struct Case {
    dims: (usize, usize, usize, usize, usize, usize), // batch, q_len, k_len, heads, kv_heads, d
    window: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    q_pos: Vec<i64>,
    k_pos: Vec<i64>,
}

impl Case {
    fn input(&self) -> PositionalInput<'_> {
        let (batch, q_len, k_len, heads, kv_heads, head_dim) = self.dims;
        PositionalInput {
            batch,
            q_len,
            k_len,
            heads,
            kv_heads,
            head_dim,
            window: self.window,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            q_pos: &self.q_pos,
            k_pos: &self.k_pos,
            scale: 0.3,
        }
    }
}

fn random(dims: (usize, usize, usize, usize, usize, usize), window: usize, seed: u64) -> Case {
    let (b, t, s, h, hk, d) = dims;
    let mut rng = Rng::new(seed);
    let mut vec = |n: usize| (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect::<Vec<f32>>();
    let (q, k, v) = (vec(b * t * h * d), vec(b * s * hk * d), vec(b * s * hk * d));
    let mut rng = Rng::new(seed ^ 0x55);
    // Keys: a shuffled ring of positions (some empty); queries: after them, some padding.
    let mut k_pos = Vec::new();
    for _ in 0..b {
        let mut p: Vec<i64> = (0..s as i64).collect();
        for i in (1..p.len()).rev() {
            p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        k_pos.extend(p.into_iter().map(|p| {
            if rng.next_u64().is_multiple_of(7) {
                -1
            } else {
                p
            }
        }));
    }
    let q_pos = (0..b * t)
        .map(|i| {
            if rng.next_u64().is_multiple_of(6) {
                -1
            } else {
                (s + i % t) as i64 - 2
            }
        })
        .collect();
    Case {
        dims,
        window,
        q,
        k,
        v,
        q_pos,
        k_pos,
    }
}

fn close(got: &[f32], want: &[f32]) -> Result<(), String> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > 1e-5 * (1.0 + w.abs()) {
            return Err(format!("[{i}]: {g} vs {w}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    // Below 32 queries the per-query path, from 32 the tiles over keys sorted by position.
    #[test]
    fn fast_path_matches_reference(
        b in 1usize..3, t in prop_oneof![1usize..9, 30usize..90], s in 1usize..70, kv in 1usize..3, g in 1usize..4,
        d in 1usize..40, window in 1usize..80, seed in 0u64..10_000,
    ) {
        let case = random((b, t, s, kv * g, kv, d), window, seed);
        let want = positional_attention_reference(&case.input()).unwrap();
        let got = positional_attention_cpu(&case.input()).unwrap();
        prop_assert!(close(&got, &want).is_ok(), "{:?}", close(&got, &want));
    }
}

#[test]
fn repeated_and_far_key_positions_match_reference_in_both_paths() {
    // Keys with repeated positions (two sequences' rows sharing a buffer) and queries past every
    // key's window (they see nothing: zeros), at 8 and at 64 queries.
    for t in [8, 64] {
        let mut case = random((2, t, 90, 6, 2, 24), 16, 11);
        let mut rng = Rng::new(5);
        case.k_pos = (0..2 * 90).map(|_| (rng.next_u64() % 40) as i64).collect();
        case.q_pos = (0..2 * t as i64).map(|i| (i * 7) % 100).collect();
        let want = positional_attention_reference(&case.input()).unwrap();
        let got = positional_attention_cpu(&case.input()).unwrap();
        close(&got, &want).unwrap();
        let row = 6 * 24;
        let blind = (0..2 * t).filter(|&i| case.q_pos[i] >= 40 + 16 - 1).count();
        let zero_rows = got
            .chunks(row)
            .filter(|r| r.iter().all(|&v| v == 0.0))
            .count();
        assert!(blind > 0 && zero_rows == blind, "{blind} {zero_rows}");
    }
}

#[test]
fn contiguous_positions_are_window_attention() {
    // Keys at positions 10..10+s, queries the last t of them, threaded and not.
    for (b, t, s, h, hk, d, w) in [(2, 5, 40, 4, 2, 16, 8), (1, 300, 300, 4, 1, 32, 64)] {
        let mut case = random((b, t, s, h, hk, d), w, 3);
        case.k_pos = (0..b).flat_map(|_| 10..10 + s as i64).collect();
        case.q_pos = (0..b)
            .flat_map(|_| 10 + (s - t) as i64..10 + s as i64)
            .collect();
        let want = window_attention_reference(&WindowInput {
            shape: WindowShape {
                batch: b,
                q_len: t,
                k_len: s,
                heads: h,
                kv_heads: hk,
                head_dim: d,
                q_offset: 10 + s - t,
                k_offset: 10,
                window: Some(w),
            },
            q: &case.q,
            k: &case.k,
            v: &case.v,
            scale: 0.3,
        })
        .unwrap();
        close(&positional_attention_cpu(&case.input()).unwrap(), &want).unwrap();
        close(
            &positional_attention_reference(&case.input()).unwrap(),
            &want,
        )
        .unwrap();
    }
}

#[test]
fn padding_queries_give_zeros_and_bad_lengths_are_errors() {
    let mut case = random((1, 3, 10, 2, 1, 4), 4, 9);
    case.q_pos = vec![-1, 9, -1];
    let o = positional_attention_cpu(&case.input()).unwrap();
    assert!(o[..8].iter().chain(&o[16..]).all(|&v| v == 0.0));
    assert!(o[8..16].iter().any(|&v| v != 0.0));
    case.k_pos.pop();
    let e = positional_attention_cpu(&case.input())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k_pos") && e.contains("9") && e.contains("10"),
        "{e}"
    );
}
