//! The fast CPU path: AVX2 where the CPU has it (runtime detection), portable scalar code
//! otherwise, threaded with rayon over blocks of output rows. Each 32-byte block of a row is
//! unpacked once (one shift and one mask per 32 weights) and multiplied into up to
//! [`TOKENS_PER_PASS`] tokens, so prefill reuses the unpacking and decode reads each weight once.
//! Bit-identical to the reference: the same integer sums, then the same float operations.
use rayon::prelude::*;

use super::{quantize_row, PackedTernary, QuantizedActivations, TernaryShape, BLOCK, KERNEL};
use crate::cpu::SharedMut;
use crate::error::{check_len, KernelError, Result};

/// Output rows per rayon task: 32 rows of a 6912-wide matrix are 55 KiB of packed weights.
const ROWS_PER_TASK: usize = 32;
/// Tokens sharing one unpacked weight block.
const TOKENS_PER_PASS: usize = 4;

/// Quantises `x [m, k]` per token (see the module docs), padding each row to `k_padded`.
pub fn quantize_activations(
    x: &[f32],
    m: usize,
    w: &PackedTernary,
) -> Result<QuantizedActivations> {
    let shape = TernaryShape::of(x, m, w)?;
    let (k, kp) = (shape.k, shape.k_padded);
    let mut q = vec![0i8; m * kp];
    let mut stats = vec![(0.0f32, 0i32); m];
    q.par_chunks_mut(kp)
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(t, (qrow, stat))| *stat = quantize_row(&x[t * k..(t + 1) * k], &mut qrow[..k]));
    let (scale, sum) = stats.into_iter().unzip();
    Ok(QuantizedActivations {
        m,
        k,
        k_padded: kp,
        q,
        scale,
        sum,
    })
}

/// `y [m, n]` for `x [m, k]`: quantise, then [`ternary_matmul_quantized`].
pub fn ternary_matmul_cpu(x: &[f32], m: usize, w: &PackedTernary) -> Result<Vec<f32>> {
    let qa = quantize_activations(x, m, w)?;
    ternary_matmul_quantized(&qa, w)
}

/// `y [m, n]` from activations already quantised (several matrices reading one input, such as
/// q/k/v or gate/up, quantise it once).
pub fn ternary_matmul_quantized(qa: &QuantizedActivations, w: &PackedTernary) -> Result<Vec<f32>> {
    if qa.k != w.k() || qa.k_padded != w.k_padded() {
        return Err(KernelError::Shape {
            kernel: KERNEL,
            arg: "quantized activations",
            expected: format!("k {} (padded {})", w.k(), w.k_padded()),
            found: vec![qa.m, qa.k, qa.k_padded],
        });
    }
    let shape = TernaryShape {
        m: qa.m,
        n: w.n(),
        k: w.k(),
        k_padded: w.k_padded(),
    };
    check_len(
        KERNEL,
        "quantized activations",
        qa.q.len(),
        qa.m * qa.k_padded,
        &shape,
    )?;
    check_len(KERNEL, "activation scales", qa.scale.len(), qa.m, &shape)?;
    check_len(KERNEL, "activation sums", qa.sum.len(), qa.m, &shape)?;
    let (m, n) = (qa.m, w.n());
    let mut y = vec![0.0f32; m * n];
    let out = SharedMut(y.as_mut_ptr());
    let use_avx2 = avx2_available();
    (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .for_each(|task| {
            let rows = task * ROWS_PER_TASK..((task + 1) * ROWS_PER_TASK).min(n);
            let mut acc = [0i32; TOKENS_PER_PASS];
            for t0 in (0..m).step_by(TOKENS_PER_PASS) {
                let tokens = (m - t0).min(TOKENS_PER_PASS);
                let acts = &qa.q[t0 * qa.k_padded..(t0 + tokens) * qa.k_padded];
                for row in rows.clone() {
                    let wrow = &w.bytes()[row * w.row_bytes()..(row + 1) * w.row_bytes()];
                    row_dot(use_avx2, wrow, acts, tokens, &mut acc);
                    for (i, &a) in acc[..tokens].iter().enumerate() {
                        let t = t0 + i;
                        let v = (a - qa.sum[t]) as f32 / qa.scale[t] * w.scale();
                        // SAFETY: (t, row) is written by this task only (rows are disjoint), inside y.
                        unsafe { *out.ptr().add(t * n + row) = v };
                    }
                }
            }
        });
    Ok(y)
}

fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc[t] = Σ_k code[k] · acts[t][k]` for one packed row and `tokens` activation rows.
fn row_dot(
    use_avx2: bool,
    wrow: &[u8],
    acts: &[i8],
    tokens: usize,
    acc: &mut [i32; TOKENS_PER_PASS],
) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2 {
        // SAFETY: AVX2 is present (checked at run time); lengths are checked inside.
        unsafe { avx2::row_dot(wrow, acts, tokens, acc) };
        return;
    }
    let _ = use_avx2;
    row_dot_scalar(wrow, acts, tokens, acc);
}

fn row_dot_scalar(wrow: &[u8], acts: &[i8], tokens: usize, acc: &mut [i32; TOKENS_PER_PASS]) {
    let kp = wrow.len() * 4;
    for (t, a) in acc.iter_mut().enumerate().take(tokens) {
        let x = &acts[t * kp..(t + 1) * kp];
        let mut sum = 0i32;
        for (b, block) in wrow.chunks_exact(BLOCK / 4).enumerate() {
            let xb = &x[b * BLOCK..(b + 1) * BLOCK];
            for (j, &byte) in block.iter().enumerate() {
                for i in 0..4 {
                    sum += i32::from((byte >> (2 * i)) & 3) * i32::from(xb[j + 32 * i]);
                }
            }
        }
        *a = sum;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCK, TOKENS_PER_PASS};

    /// AVX2 form of [`super::row_dot_scalar`]. Per 32-byte block: four shift+mask steps give the
    /// codes of 4 × 32 consecutive weights; `maddubs` multiplies them (unsigned, ≤ 2) by the
    /// signed activations into i16 pairs (|·| ≤ 512), the four are summed (≤ 2048, no overflow)
    /// and widened to i32 by `madd` with ones.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row_dot(
        wrow: &[u8],
        acts: &[i8],
        tokens: usize,
        acc: &mut [i32; TOKENS_PER_PASS],
    ) {
        let kp = wrow.len() * 4;
        assert!(tokens <= TOKENS_PER_PASS && acts.len() >= tokens * kp);
        let mask = _mm256_set1_epi8(3);
        let ones = _mm256_set1_epi16(1);
        let mut sums = [_mm256_setzero_si256(); TOKENS_PER_PASS];
        for b in 0..kp / BLOCK {
            // SAFETY: block b of the row is 32 bytes inside `wrow` (kp = 4 · wrow.len()).
            let packed = unsafe { _mm256_loadu_si256(wrow.as_ptr().add(b * 32) as *const __m256i) };
            let codes = [
                _mm256_and_si256(packed, mask),
                _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask),
                _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask),
                _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask),
            ];
            for (t, sum) in sums.iter_mut().enumerate().take(tokens) {
                // SAFETY: token t's activations for block b are 128 bytes inside `acts` (asserted).
                let x = unsafe { acts.as_ptr().add(t * kp + b * BLOCK) };
                let load = |i: usize| {
                    // SAFETY: i < 4, so the 32 bytes at 32·i lie in the block's 128 (above);
                    // the load is unaligned.
                    unsafe { _mm256_loadu_si256(x.add(32 * i) as *const __m256i) }
                };
                let p01 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(codes[0], load(0)),
                    _mm256_maddubs_epi16(codes[1], load(1)),
                );
                let p23 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(codes[2], load(2)),
                    _mm256_maddubs_epi16(codes[3], load(3)),
                );
                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(_mm256_add_epi16(p01, p23), ones));
            }
        }
        for (a, s) in acc.iter_mut().zip(sums).take(tokens) {
            // SAFETY: `__m256i` and `[i32; 8]` have the same size, and every bit pattern is a
            // valid i32.
            let lanes: [i32; 8] = unsafe { std::mem::transmute(s) };
            *a = lanes.iter().sum();
        }
    }
}
