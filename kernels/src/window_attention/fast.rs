//! The fast CPU path: per query row (threaded), per head, one online-softmax pass over only the
//! visible keys: the running max, normaliser and output are rescaled when the max grows. Work
//! O(q_len · visible · d), memory O(d) per row.
use rayon::prelude::*;

use super::{WindowInput, PARALLEL_MIN_MACS};
use crate::cpu::{dot, fma_available};
use crate::error::Result;

pub fn window_attention_cpu(input: &WindowInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (h, hk, d) = (s.heads, s.kv_heads, s.head_dim);
    let group = h / hk;
    let fma = fma_available();
    let mut o = vec![0.0f32; s.q_elems()];
    // One task per (query row, head): decoding (one row) still spreads over the heads, unless the
    // whole call is too little work to pay for waking threads (a small model's decode step).
    let keys: usize = (0..s.q_len)
        .map(|i| s.visible(i))
        .map(|(lo, hi)| hi + 1 - lo)
        .sum();
    let parallel = s.batch * keys * h * d >= PARALLEL_MIN_MACS;
    let task = |(slot, acc): (usize, &mut [f32])| {
        let (row, head) = (slot / h, slot % h);
        let (b, i) = (row / s.q_len, row % s.q_len);
        let (lo, hi) = s.visible(i);
        {
            let q = &input.q[(row * h + head) * d..][..d];
            let (mut max, mut total) = (f32::NEG_INFINITY, 0.0f32);
            for j in lo..=hi {
                let at = ((b * s.k_len + j) * hk + head / group) * d;
                let score = dot(fma, q, &input.k[at..at + d]) * input.scale;
                if score > max {
                    let rescale = (max - score).exp();
                    total *= rescale;
                    acc.iter_mut().for_each(|a| *a *= rescale);
                    max = score;
                }
                let p = (score - max).exp();
                total += p;
                for (a, &v) in acc.iter_mut().zip(&input.v[at..at + d]) {
                    *a += p * v;
                }
            }
            acc.iter_mut().for_each(|a| *a /= total);
        }
    };
    if parallel {
        o.par_chunks_mut(d).enumerate().for_each(task);
    } else {
        o.chunks_mut(d).enumerate().for_each(task);
    }
    Ok(o)
}
