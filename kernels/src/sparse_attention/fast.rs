//! Fast CPU paths: rows in parallel. The selection bounds each key's noise from a table so that
//! only about K keys per row get their exact score (with AVX-512, sixteen keys at a time:
//! `select_avx512`), keeps the K best with `select_nth_unstable` (O(N) per row) on integer keys
//! in [`super::rank`]'s order and sorts only those. The attention gathers each query's K keys
//! and values with vectorised products.
use rayon::prelude::*;

use super::{gumbel_of_bits, noise_bits, SketchTopk, SparseInput};
use crate::cpu::{dot, fma_available};
use crate::cpu_math::{exp, simd};
use crate::error::Result;

pub fn sketch_topk_cpu(sel: &SketchTopk<'_>) -> Result<Vec<i32>> {
    #[cfg(target_arch = "x86_64")]
    let vector = super::select_avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    let vector = false;
    sketch_topk_with(sel, vector)
}

/// [`sketch_topk_cpu`], its scan sixteen keys at a time with AVX-512 when `vector` (which the
/// caller has checked the CPU for).
fn sketch_topk_with(sel: &SketchTopk<'_>, vector: bool) -> Result<Vec<i32>> {
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
                Some(seed) if n > k => bounded_candidates(sel, seed, (b, h, i), scratch, vector),
                _ => cand
                    .extend((0..n).filter_map(|j| sel.score(b, h, i, j).map(|s| rank_key(s, j)))),
            }
            // Integer keys in `rank`'s order: cheaper to select and sort than its comparisons.
            let cand = &mut scratch.candidates;
            if cand.len() > k {
                cand.select_nth_unstable(k - 1);
                cand.truncate(k);
            }
            cand.sort_unstable();
            for (slot, &key) in slots.iter_mut().zip(cand.iter()) {
                *slot = key as u32 as i32;
            }
        });
    Ok(out)
}

/// A candidate (exact score, key) as one integer whose ascending order is [`rank`]'s: the score
/// in `f32::total_cmp`'s order, descending, in the high half; the key (`< 2^31`: the indices
/// are i32) in the low half.
#[inline]
pub(super) fn rank_key(score: f32, key: usize) -> u64 {
    (u64::from(!total_order(score)) << 32) | key as u64
}

/// `f32::total_cmp`'s order as an unsigned one: negatives (reversed) below the positives.
#[inline]
pub(super) fn total_order(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

/// The inverse of [`total_order`].
#[inline]
pub(super) fn from_total_order(order: u32) -> f32 {
    f32::from_bits(if order >> 31 == 1 {
        order & !(1 << 31)
    } else {
        !order
    })
}

#[derive(Default)]
pub(super) struct Scratch {
    /// [`rank_key`]s of the keys that may be among the K best.
    pub(super) candidates: Vec<u64>,
    /// Lower bounds of the selectable keys' scores.
    pub(super) lower: Vec<f32>,
    /// (upper bound, key) of the selectable keys.
    upper: Vec<(f32, usize)>,
    /// The AVX-512 path's per-key upper bounds and noise bits, and the keys it keeps.
    pub(super) upper_of: Vec<f32>,
    pub(super) bits_of: Vec<u32>,
    pub(super) kept_keys: Vec<u32>,
    /// Their lower bounds, as [`total_order`] integers.
    pub(super) kept_lower: Vec<u32>,
}

/// High bits of the noise's 24 that index [`Bounds`].
pub(super) const BUCKET_BITS: u32 = 10;

/// Per bucket of noise bits (their top [`BUCKET_BITS`]), a lower and an upper bound of the noise
/// of every bits value in it, with a margin for the rounding of `ln` in f32 (the noise is
/// increasing in its bits, up to that rounding); and, per 32nd of the bits, the smallest lower
/// bound of its buckets (the AVX-512 path's coarse bounds, one register pair).
pub(super) struct Bounds {
    pub(super) lower: Vec<f32>,
    pub(super) upper: Vec<f32>,
    pub(super) coarse_lower: [f32; 32],
}

pub(super) fn noise_bounds() -> &'static Bounds {
    static BOUNDS: std::sync::OnceLock<Bounds> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let width = 1u32 << (24 - BUCKET_BITS);
        // |noise| < 18: a few of f32's ulps there are under 1e-5.
        let (lower, upper): (Vec<f32>, Vec<f32>) = (0..1u32 << BUCKET_BITS)
            .map(|bucket| {
                let lo = gumbel_of_bits(bucket * width);
                let hi = gumbel_of_bits(bucket * width + width - 1);
                (lo - 1e-4, hi + 1e-4)
            })
            .unzip();
        let per_coarse = lower.len() / 32;
        let coarse_lower = std::array::from_fn(|c| {
            lower[c * per_coarse..(c + 1) * per_coarse]
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min)
        });
        Bounds {
            lower,
            upper,
            coarse_lower,
        }
    })
}

/// Gumbel-top-K's candidates for (b, h, i) without the noise's two logarithms per key: each
/// key's score `log Â + G` is bounded from a table of the noise's bounds per bucket of its hash
/// bits; with `t` the K-th largest lower bound, K keys score at least `t`, so a key whose upper
/// bound is below `t` cannot be among the K best. Only the others (about K) get their exact
/// score, the one [`SketchTopk::score`] gives: the selection is the reference's, exactly.
/// With AVX-512 (and K ≤ 128) the scan goes sixteen keys at a time (`select_avx512`).
fn bounded_candidates(
    sel: &SketchTopk<'_>,
    seed: u64,
    row: (usize, usize, usize),
    scratch: &mut Scratch,
    vector: bool,
) {
    let bounds = noise_bounds();
    #[cfg(target_arch = "x86_64")]
    if vector && sel.keys <= super::select_avx512::MAX_KEYS {
        // SAFETY: `vector` is set only where `select_avx512::available()`; `sel` was
        // validated and K is within the path's limit.
        unsafe { super::select_avx512::bounded_candidates(sel, seed, row, bounds, scratch) };
        return;
    }
    let _ = vector;
    let (b, h, i) = row;
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
        let bucket = (noise_bits(seed, sel.counter(b, h, i, j)) >> (24 - BUCKET_BITS)) as usize;
        // f32 addition rounds monotonically: lp + lo <= lp + G <= lp + hi after rounding too.
        lower.push(lp + bounds.lower[bucket]);
        upper.push((lp + bounds.upper[bucket], j));
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
            .filter_map(|&(_, j)| sel.score(b, h, i, j).map(|s| rank_key(s, j))),
    );
}

pub fn sparse_attention_cpu(input: &SparseInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (n, h, d, kk) = (s.seq_len, s.heads, s.head_dim, s.keys);
    let fma = fma_available();
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
            for &j in idx.iter().filter(|&&j| j >= 0) {
                let k = &input.k[at(j as usize)..at(j as usize) + d];
                scores.push((j as usize, dot(fma, q, k) * input.scale));
            }
            if scores.is_empty() {
                return;
            }
            simd(
                #[inline(always)]
                || {
                    let max = scores
                        .iter()
                        .fold(f32::NEG_INFINITY, |m, &(_, sc)| m.max(sc));
                    let mut total = 0.0f32;
                    for (_, sc) in scores.iter_mut() {
                        *sc = exp(*sc - max);
                        total += *sc;
                    }
                    // The weighted values: one fused multiply-add per element, vectorised.
                    for &(j, p) in scores.iter() {
                        for (acc, &v) in out.iter_mut().zip(&input.v[at(j)..at(j) + d]) {
                            *acc = p.mul_add(v, *acc);
                        }
                    }
                    let inv = 1.0 / total;
                    out.iter_mut().for_each(|x| *x *= inv);
                },
            );
        },
    );
    Ok(o)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{from_total_order, noise_bounds, rank_key, total_order, BUCKET_BITS};
    use crate::sparse_attention::{gumbel_of_bits, sketch_topk_reference, SketchTopk};

    /// Every one of the 2^24 noise values lies within its bucket's bounds and its coarse
    /// bucket's lower bound: the pruning rests on these.
    #[test]
    fn every_noise_value_is_within_its_bounds() {
        let b = noise_bounds();
        let coarse_shift = 24 - 5;
        for bits in 0..1u32 << 24 {
            let g = gumbel_of_bits(bits);
            let fine = (bits >> (24 - BUCKET_BITS)) as usize;
            assert!(
                b.lower[fine] <= g
                    && g <= b.upper[fine]
                    && b.coarse_lower[(bits >> coarse_shift) as usize] <= g,
                "bits {bits}: {g} outside [{}, {}]",
                b.lower[fine],
                b.upper[fine]
            );
        }
    }

    /// Both scans (AVX-512 where this CPU has it, the portable one) select the reference's keys
    /// on rows with NaN, −∞ and tied log-probabilities, padding, the own key first, row lengths
    /// off the sixteen-key chunks and K up to the AVX-512 path's limit.
    #[test]
    fn both_scans_select_the_references_keys() {
        let (batch, n, heads) = (2, 203, 2);
        let mut seed = 5u64;
        let mut next = move || {
            seed = crate::sparse_attention::splitmix64(seed);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let mixed: Vec<f32> = (0..batch * n * n)
            .map(|e| match e % 97 {
                0 => f32::NAN,
                1..=6 => f32::NEG_INFINITY,
                7..=12 => -4.0,
                _ => -8.0 * next(),
            })
            .collect();
        // Every key equally likely: the noise alone decides, the bounds are at their tightest.
        let flat = vec![-(n as f32).ln(); batch * n * n];
        let mask: Vec<u8> = (0..batch * n)
            .map(|e| u8::from(e % n < n - 9 * (e / n)))
            .collect();
        #[cfg(target_arch = "x86_64")]
        let vector = super::super::select_avx512::available();
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        for (lp, keys) in [&mixed, &flat]
            .into_iter()
            .flat_map(|lp| [1, 16, 17, 64, 128].map(|k| (lp, k)))
        {
            for (include_self, masked) in [(false, false), (true, true), (false, true)] {
                let sel = SketchTopk {
                    batch,
                    seq_len: n,
                    heads,
                    keys,
                    log_probs: lp,
                    mask: masked.then_some(&mask[..]),
                    gumbel_seed: Some(keys as u64),
                    include_self,
                };
                let want = sketch_topk_reference(&sel).unwrap();
                let what = format!("K {keys}, self {include_self}, masked {masked}");
                assert_eq!(
                    super::sketch_topk_with(&sel, false).unwrap(),
                    want,
                    "portable, {what}"
                );
                if vector {
                    assert_eq!(
                        super::sketch_topk_with(&sel, true).unwrap(),
                        want,
                        "AVX-512, {what}"
                    );
                }
            }
        }
        if !vector {
            eprintln!("SKIPPED: the AVX-512 scan (this CPU lacks AVX-512 F and DQ)");
        }
    }

    /// The integer keys sort as `rank` and `f32::total_cmp` do, on the values where orders
    /// go wrong: signed zeros, infinities, NaNs of both signs, subnormals, ties.
    #[test]
    fn integer_keys_keep_the_float_orders() {
        let values = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE / 4.0,
            -f32::MIN_POSITIVE / 4.0,
            f32::MAX,
            f32::MIN,
            3.5,
            -7.25,
        ];
        let pairs: Vec<(f32, usize)> = values
            .iter()
            .enumerate()
            .flat_map(|(i, &v)| [(v, i), (v, i + 20)])
            .collect();
        for a in &pairs {
            assert_eq!(from_total_order(total_order(a.0)).to_bits(), a.0.to_bits());
            for b in &pairs {
                assert_eq!(
                    rank_key(a.0, a.1).cmp(&rank_key(b.0, b.1)),
                    super::super::rank(a, b),
                    "{a:?} {b:?}"
                );
                assert_eq!(total_order(a.0).cmp(&total_order(b.0)), a.0.total_cmp(&b.0));
            }
        }
    }
}
