//! The per-row attention (decoding, short chunks) with AVX2 and FMA, written with intrinsics:
//! the same key blocks and online softmax as `fast::attend_keys`, which stays the path for other
//! CPUs and for head sizes that are not whole vectors. Keys and values of any [`KvElem`] are
//! widened in registers as they are loaded (an f16 cache with F16C's `vcvtph2ps`), so a
//! half-precision cache is read at half the bytes with no pass to widen it; the eight q·k lane
//! sums of eight keys are folded together by a transpose of horizontal adds.
//!
//! Against the auto-vectorised `fast::attend_keys` on one decode step over 2048 cached keys
//! (hidden 256, 4 / 2 heads): f32 48–51 → 40 µs, f16 31–34 µs.
use std::arch::x86_64::*;

use super::fast::KEY_BLOCK;
use super::{softmax_block, WindowInput};
use crate::cpu::KvElem;

/// Whether [`attend_keys`] runs here for `E`: AVX2 and FMA (and F16C for f16), and a head size
/// in whole vectors.
pub(super) fn available<E: KvElem>(head_dim: usize) -> bool {
    head_dim.is_multiple_of(8)
        && crate::cpu::fma_available()
        && (!E::NEEDS_F16C || std::arch::is_x86_feature_detected!("f16c"))
}

/// `fast::attend_keys` with intrinsics: `accs` `[heads, head_dim]` gets the unnormalised
/// weighted values of query row `row` over keys `lo..=hi`, `states` each head's running max and
/// normaliser.
///
/// # Safety
/// [`available`] for `E` and this input's head size; `input` validated; `lo..=hi` index its
/// keys.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend_keys<E: KvElem>(
    input: &WindowInput<'_, E>,
    row: usize,
    lo: usize,
    hi: usize,
    accs: &mut [f32],
    states: &mut [(f32, f32)],
) {
    let s = input.shape;
    let (h, hk, d) = (s.heads, s.kv_heads, s.head_dim);
    let group = h / hk;
    let b = row / s.q_len;
    let mut p = [0.0f32; KEY_BLOCK];
    let mut start = lo;
    while start <= hi {
        let n = (hi + 1 - start).min(KEY_BLOCK);
        for (head, (acc, (max, total))) in accs.chunks_mut(d).zip(states.iter_mut()).enumerate() {
            let kv = head / group;
            let at = |j: usize| ((b * s.k_len + j) * hk + kv) * d;
            let q = &input.q[(row * h + head) * d..][..d];
            let p = &mut p[..n];
            // q·k, eight keys at a time: eight accumulators, folded together at the end.
            let mut e = 0;
            while e + 8 <= n {
                let mut sums = [_mm256_setzero_ps(); 8];
                for c in (0..d).step_by(8) {
                    // SAFETY: `c + 8 <= d`: within `q` and every key row (validated lengths).
                    unsafe {
                        let q8 = _mm256_loadu_ps(q.as_ptr().add(c));
                        for (t, sum) in sums.iter_mut().enumerate() {
                            let k = input.k.as_ptr().add(at(start + e + t) + c);
                            *sum = _mm256_fmadd_ps(q8, E::load8(k), *sum);
                        }
                    }
                }
                let h01 = _mm256_hadd_ps(sums[0], sums[1]);
                let h23 = _mm256_hadd_ps(sums[2], sums[3]);
                let h45 = _mm256_hadd_ps(sums[4], sums[5]);
                let h67 = _mm256_hadd_ps(sums[6], sums[7]);
                let h0123 = _mm256_hadd_ps(h01, h23);
                let h4567 = _mm256_hadd_ps(h45, h67);
                let folded = _mm256_add_ps(
                    _mm256_permute2f128_ps::<0x20>(h0123, h4567),
                    _mm256_permute2f128_ps::<0x31>(h0123, h4567),
                );
                // SAFETY: `e + 8 <= n = p.len()`.
                unsafe { _mm256_storeu_ps(p.as_mut_ptr().add(e), folded) };
                e += 8;
            }
            for (t, score) in p.iter_mut().enumerate().skip(e) {
                let mut sum = _mm256_setzero_ps();
                for c in (0..d).step_by(8) {
                    // SAFETY: as above.
                    unsafe {
                        let k = input.k.as_ptr().add(at(start + t) + c);
                        sum = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(c)), E::load8(k), sum);
                    }
                }
                let mut lanes = [0.0f32; 8];
                // SAFETY: eight values.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
                *score = lanes.iter().sum();
            }
            softmax_block(p, input.scale, max, total, acc);
            // The weighted values, eight outputs per register, up to eight registers at a time.
            for tile in (0..d).step_by(64) {
                let width = (d - tile).min(64) / 8;
                let mut r = [_mm256_setzero_ps(); 8];
                // SAFETY: `tile + 8 * width <= d`: within `acc` and every value row.
                unsafe {
                    for (w, r) in r.iter_mut().enumerate().take(width) {
                        *r = _mm256_loadu_ps(acc.as_ptr().add(tile + 8 * w));
                    }
                    if width == 8 {
                        // The whole tile in eight registers (a constant count the compiler
                        // unrolls).
                        for (t, &weight) in p.iter().enumerate() {
                            let wv = _mm256_set1_ps(weight);
                            let v = input.v.as_ptr().add(at(start + t) + tile);
                            for (w, r) in r.iter_mut().enumerate() {
                                *r = _mm256_fmadd_ps(wv, E::load8(v.add(8 * w)), *r);
                            }
                        }
                    } else {
                        for (t, &weight) in p.iter().enumerate() {
                            let wv = _mm256_set1_ps(weight);
                            let v = input.v.as_ptr().add(at(start + t) + tile);
                            for (w, r) in r.iter_mut().enumerate().take(width) {
                                *r = _mm256_fmadd_ps(wv, E::load8(v.add(8 * w)), *r);
                            }
                        }
                    }
                    for (w, r) in r.iter().enumerate().take(width) {
                        _mm256_storeu_ps(acc.as_mut_ptr().add(tile + 8 * w), *r);
                    }
                }
            }
        }
        start += n;
    }
}
