//! Fast CPU paths: rows in parallel; the selection keeps the K best with `select_nth_unstable_by`
//! (O(N) per row) and sorts only those.
use rayon::prelude::*;

use super::{gumbel_of_bits, noise_bits, rank, SketchTopk, SparseInput};
use crate::error::Result;

pub fn sketch_topk_cpu(sel: &SketchTopk<'_>) -> Result<Vec<i32>> {
    sel.validate()?;
    let (n, k) = (sel.seq_len, sel.keys);
    let mut out = vec![-1i32; sel.batch * sel.heads * n * k];
    out.par_chunks_mut(k)
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (row, slots)| {
            let (i, h, b) = (row % n, (row / n) % sel.heads, row / (n * sel.heads));
            let cand = &mut scratch.candidates;
            cand.clear();
            match sel.gumbel_seed {
                Some(seed) if n > k => bounded_candidates(sel, seed, (b, h, i), scratch),
                _ => cand.extend((0..n).filter_map(|j| sel.score(b, h, i, j).map(|s| (s, j)))),
            }
            let cand = &mut scratch.candidates;
            if cand.len() > k {
                cand.select_nth_unstable_by(k - 1, rank);
                cand.truncate(k);
            }
            cand.sort_unstable_by(rank);
            for (slot, &(_, j)) in slots.iter_mut().zip(cand.iter()) {
                *slot = j as i32;
            }
        });
    Ok(out)
}

#[derive(Default)]
struct Scratch {
    /// (exact score, key) of the keys that may be among the K best.
    candidates: Vec<(f32, usize)>,
    /// Lower bounds of the selectable keys' scores.
    lower: Vec<f32>,
    /// (upper bound, key) of the selectable keys.
    upper: Vec<(f32, usize)>,
}

/// High bits of the noise's 24 that index [`noise_bounds`].
const BUCKET_BITS: u32 = 12;

/// Per bucket of noise bits (their top [`BUCKET_BITS`]), a lower and an upper bound of the noise
/// of every bits value in it, with a margin for the rounding of `ln` in f32 (the noise is
/// increasing in its bits, up to that rounding).
fn noise_bounds() -> &'static [(f32, f32)] {
    static BOUNDS: std::sync::OnceLock<Vec<(f32, f32)>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let width = 1u32 << (24 - BUCKET_BITS);
        (0..1u32 << BUCKET_BITS)
            .map(|bucket| {
                let lo = gumbel_of_bits(bucket * width);
                let hi = gumbel_of_bits(bucket * width + width - 1);
                // |noise| < 18: a few of f32's ulps there are under 1e-5.
                (lo - 1e-4, hi + 1e-4)
            })
            .collect()
    })
}

/// Gumbel-top-K's candidates for (b, h, i) without the noise's two logarithms per key: each
/// key's score `log Â + G` is bounded from a table of the noise's bounds per bucket of its hash
/// bits; with `t` the K-th largest lower bound, K keys score at least `t`, so a key whose upper
/// bound is below `t` cannot be among the K best. Only the others (about K) get their exact
/// score, the one [`SketchTopk::score`] gives: the selection is the reference's, exactly.
fn bounded_candidates(
    sel: &SketchTopk<'_>,
    seed: u64,
    (b, h, i): (usize, usize, usize),
    scratch: &mut Scratch,
) {
    let bounds = noise_bounds();
    let (lower, upper) = (&mut scratch.lower, &mut scratch.upper);
    lower.clear();
    upper.clear();
    for j in 0..sel.seq_len {
        if !sel.is_token(b, j) {
            continue;
        }
        let lp = sel.log_prob(b, i, j);
        if lp == f32::NEG_INFINITY || (sel.include_self && j == i && sel.is_token(b, i)) {
            // Never selectable, or always first: the exact score says which.
            lower.push(f32::NEG_INFINITY);
            upper.push((f32::INFINITY, j));
            continue;
        }
        let bits = noise_bits(seed, sel.counter(b, h, i, j));
        let (lo, hi) = bounds[(bits >> (24 - BUCKET_BITS)) as usize];
        // f32 addition rounds monotonically: lp + lo <= lp + G <= lp + hi after rounding too.
        lower.push(lp + lo);
        upper.push((lp + hi, j));
    }
    let k = sel.keys;
    let t = if lower.len() > k {
        let (_, kth, _) = lower.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        *kth
    } else {
        f32::NEG_INFINITY
    };
    scratch.candidates.extend(
        upper
            .iter()
            // Kept unless below `t`: a NaN bound keeps its key (the exact score decides).
            .filter(|&&(u, _)| u.partial_cmp(&t) != Some(std::cmp::Ordering::Less))
            .filter_map(|&(_, j)| sel.score(b, h, i, j).map(|s| (s, j))),
    );
}

pub fn sparse_attention_cpu(input: &SparseInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (n, h, d, kk) = (s.seq_len, s.heads, s.head_dim, s.keys);
    let mut o = vec![0.0f32; s.elems()];
    // One task per (b, i, head): its output row.
    o.par_chunks_mut(d).enumerate().for_each_init(
        || Vec::with_capacity(kk),
        |scores, (slot, out)| {
            let (head, i, b) = (slot % h, (slot / h) % n, slot / (h * n));
            let at = |t: usize| ((b * n + t) * h + head) * d;
            let q = &input.q[at(i)..at(i) + d];
            let idx = &input.indices[((b * h + head) * n + i) * kk..][..kk];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for &j in idx.iter().filter(|&&j| j >= 0) {
                let k = &input.k[at(j as usize)..at(j as usize) + d];
                let sc = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * input.scale;
                max = max.max(sc);
                scores.push((j as usize, sc));
            }
            if scores.is_empty() {
                return;
            }
            let mut total = 0.0f32;
            for (_, sc) in scores.iter_mut() {
                *sc = (*sc - max).exp();
                total += *sc;
            }
            for &(j, p) in scores.iter() {
                for (acc, &v) in out.iter_mut().zip(&input.v[at(j)..at(j) + d]) {
                    *acc += p * v;
                }
            }
            out.iter_mut().for_each(|x| *x /= total);
        },
    );
    Ok(o)
}
