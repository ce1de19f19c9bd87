//! Gumbel-top-K's candidates with AVX-512, sixteen keys at a time: the same bounds as the
//! portable scan ([`super::fast`]), a cheaper way to the threshold.
//!
//! 1. Per key: its noise bits (both splitmix64 hashes in 64-bit lanes), an upper bound of its
//!    score from the bounds table (a gather), a coarse lower bound from the table's every 32nd
//!    entry (a register permute, no gather). Each lane keeps its `r = ⌈K/16⌉` largest coarse
//!    lower bounds in `r` registers (a compare-exchange chain per chunk).
//! 2. `t′` = the smallest of the lanes' `r`-th largest: at least `16·r ≥ K` keys have a lower
//!    bound, and so a score, of at least `t′`. A key whose upper bound is below `t′` cannot be
//!    among the K best; the others (a few K) are compressed out with their noise bits.
//! 3. Their exact lower bounds (the table, scalar) give `t`, the K-th largest of them, and the
//!    keys whose upper bound is not below `t` get their exact score, as in the portable path.
//!
//! Every step only drops keys the portable path would also drop or keeps more, so the
//! selection is the reference's exactly (tested against both).
use std::arch::x86_64::*;

use super::fast::{from_total_order, rank_key, total_order, Bounds, Scratch, BUCKET_BITS};
use super::SketchTopk;

/// `x` is not below `t` (true for a NaN on either side: the exact score decides).
fn not_below(x: f32, t: f32) -> bool {
    x.partial_cmp(&t) != Some(std::cmp::Ordering::Less)
}

/// The largest K this path takes: one register per sixteen of it.
pub(super) const MAX_KEYS: usize = 128;

/// The top bits of the noise's 24 that index the coarse bounds (32 entries, two registers).
const COARSE_BITS: u32 = 5;

/// Whether this CPU runs [`bounded_candidates`]: AVX-512 F and DQ (64-bit lane multiplies).
pub(super) fn available() -> bool {
    crate::cpu::avx512_allowed()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// splitmix64 in eight 64-bit lanes (the scalar [`super::splitmix64`]).
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn splitmix64x8(x: __m512i) -> __m512i {
    let x = _mm512_add_epi64(x, _mm512_set1_epi64(0x9E37_79B9_7F4A_7C15u64 as i64));
    let x = _mm512_xor_si512(x, _mm512_srli_epi64::<30>(x));
    let x = _mm512_mullo_epi64(x, _mm512_set1_epi64(0xBF58_476D_1CE4_E5B9u64 as i64));
    let x = _mm512_xor_si512(x, _mm512_srli_epi64::<27>(x));
    let x = _mm512_mullo_epi64(x, _mm512_set1_epi64(0x94D0_49BB_1331_11EBu64 as i64));
    _mm512_xor_si512(x, _mm512_srli_epi64::<31>(x))
}

/// The 24 noise bits of counters `first..first + 16` ([`super::noise_bits`]), one per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn noise_bits16(seed: __m512i, first: u64) -> __m512i {
    let low = _mm512_add_epi64(
        _mm512_set1_epi64(first as i64),
        _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let high = _mm512_add_epi64(low, _mm512_set1_epi64(8));
    let bits =
        |c: __m512i| _mm512_srli_epi64::<40>(splitmix64x8(_mm512_xor_si512(seed, splitmix64x8(c))));
    let (low, high) = (
        _mm512_cvtepi64_epi32(bits(low)),
        _mm512_cvtepi64_epi32(bits(high)),
    );
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), high)
}

/// Fills `scratch.candidates` with the [`rank_key`] (exact score, key) of every key of (b, h, i)
/// that may be among the K best, as the portable `bounded_candidates` does.
///
/// # Safety
/// [`available`]; `sel` validated; `sel.keys <= MAX_KEYS`.
#[target_feature(enable = "avx512f,avx512dq")]
pub(super) unsafe fn bounded_candidates(
    sel: &SketchTopk<'_>,
    seed: u64,
    (b, h, i): (usize, usize, usize),
    bounds: &Bounds,
    scratch: &mut Scratch,
) {
    let (n, k) = (sel.seq_len, sel.keys);
    debug_assert!((1..=MAX_KEYS).contains(&k));
    let lp = &sel.log_probs[(b * n + i) * n..][..n];
    let mask = sel.mask.map(|m| &m[b * n..][..n]);
    let first = sel.counter(b, h, i, 0);
    let r = k.div_ceil(16);
    let (upper, bits) = (&mut scratch.upper_of, &mut scratch.bits_of);
    // Every entry is written below: resized only when the row length changes.
    upper.resize(n, 0.0);
    bits.resize(n, 0);

    // 1. Bounds per key; the lanes' r largest coarse lower bounds.
    let seed_v = _mm512_set1_epi64(seed as i64);
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let coarse = &bounds.coarse_lower;
    // SAFETY: 32 values.
    let (coarse_lo, coarse_hi) = unsafe {
        (
            _mm512_loadu_ps(coarse.as_ptr()),
            _mm512_loadu_ps(coarse.as_ptr().add(16)),
        )
    };
    let mut top = [neg_inf; MAX_KEYS / 16];
    let full = n / 16 * 16;
    for j in (0..full).step_by(16) {
        let noise = noise_bits16(seed_v, first + j as u64);
        let fine = _mm512_srli_epi32::<{ 24 - BUCKET_BITS }>(noise);
        // SAFETY: `j + 16 <= n`, the length of `lp`, `upper`, `bits` (and of `mask`); the
        // fine index is below 2^BUCKET_BITS, the length of `bounds.upper`.
        unsafe {
            let l = _mm512_loadu_ps(lp.as_ptr().add(j));
            let hi = _mm512_i32gather_ps::<4>(fine, bounds.upper.as_ptr());
            let lo = _mm512_permutex2var_ps(
                coarse_lo,
                _mm512_srli_epi32::<{ 24 - COARSE_BITS }>(noise),
                coarse_hi,
            );
            let mut up = _mm512_add_ps(l, hi);
            let mut low = _mm512_add_ps(l, lo);
            if let Some(m) = mask {
                let bytes = _mm_loadu_si128(m.as_ptr().add(j) as *const __m128i);
                let tokens =
                    _mm512_cmpneq_epi32_mask(_mm512_cvtepu8_epi32(bytes), _mm512_setzero_si512());
                up = _mm512_mask_mov_ps(neg_inf, tokens, up);
                low = _mm512_mask_mov_ps(neg_inf, tokens, low);
            }
            _mm512_storeu_ps(upper.as_mut_ptr().add(j), up);
            _mm512_storeu_si512(bits.as_mut_ptr().add(j) as *mut __m512i, noise);
            // A NaN bound says nothing: it counts as -inf here (its key is kept below).
            let mut x =
                _mm512_mask_mov_ps(neg_inf, _mm512_cmp_ps_mask::<_CMP_ORD_Q>(low, low), low);
            for t in top.iter_mut().take(r) {
                let larger = _mm512_max_ps(*t, x);
                x = _mm512_min_ps(*t, x);
                *t = larger;
            }
        }
    }
    // The last keys (fewer than sixteen) get bounds but stay out of the threshold.
    for j in full..n {
        let noise = super::noise_bits(seed, first + j as u64);
        bits[j] = noise;
        upper[j] = if sel.is_token(b, j) {
            lp[j] + bounds.upper[(noise >> (24 - BUCKET_BITS)) as usize]
        } else {
            f32::NEG_INFINITY
        };
    }
    if sel.include_self && sel.is_token(b, i) {
        upper[i] = f32::INFINITY; // always first: its exact score is +inf
    }

    // 2. t′ and the keys it keeps.
    let lane_min = _mm512_reduce_min_ps(top[r - 1]);
    let t_coarse = _mm512_set1_ps(lane_min);
    let (kept_keys, kept_lower) = (&mut scratch.kept_keys, &mut scratch.kept_lower);
    kept_keys.clear();
    kept_lower.clear();
    kept_keys.reserve(n + 16);
    let mut len = 0;
    for j in (0..full).step_by(16) {
        // SAFETY: `j + 16 <= n`; `kept_keys` has room for `len + 16 <= n + 16`.
        unsafe {
            let up = _mm512_loadu_ps(upper.as_ptr().add(j));
            let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(up, t_coarse);
            if keep != 0 {
                let index = _mm512_add_epi32(
                    _mm512_set1_epi32(j as i32),
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                );
                _mm512_storeu_si512(
                    kept_keys.as_mut_ptr().add(len) as *mut __m512i,
                    _mm512_maskz_compress_epi32(keep, index),
                );
                len += keep.count_ones() as usize;
            }
        }
    }
    // SAFETY: the first `len` entries were written above.
    unsafe { kept_keys.set_len(len) };
    kept_keys.extend(
        (full..n)
            .filter(|&j| not_below(upper[j], lane_min))
            .map(|j| j as u32),
    );

    // 3. Exact lower bounds of the kept keys, their K-th largest, the candidates.
    // As integers in `total_cmp`'s order (cheaper to select among).
    kept_lower.extend(kept_keys.iter().map(|&j| {
        let j = j as usize;
        total_order(if sel.is_token(b, j) {
            lp[j] + bounds.lower[(bits[j] >> (24 - BUCKET_BITS)) as usize]
        } else {
            f32::NEG_INFINITY
        })
    }));
    let t = if kept_lower.len() > k {
        let at = kept_lower.len() - k;
        from_total_order(*kept_lower.select_nth_unstable(at).1)
    } else {
        f32::NEG_INFINITY
    };
    scratch.candidates.extend(
        kept_keys
            .iter()
            .map(|&j| j as usize)
            // Kept unless below `t`: a NaN bound keeps its key (the exact score decides).
            .filter(|&j| not_below(upper[j], t))
            .filter_map(|j| {
                sel.score_of_bits(b, i, j, Some(bits[j]))
                    .map(|s| rank_key(s, j))
            }),
    );
}
