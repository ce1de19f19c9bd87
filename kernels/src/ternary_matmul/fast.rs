//! The fast CPU path: AVX-512 VNNI where the CPU has it, AVX2 where it has that (runtime
//! detection), portable scalar code otherwise, threaded with rayon over blocks of output rows.
//! Each 32-byte block of a row is unpacked once (one shift and one mask per 32 weights) and
//! multiplied into up to [`TOKENS_PER_PASS`] tokens ([`MAX_TOKENS_PER_PASS`] with VNNI), so
//! prefill reuses the unpacking and decode reads each weight once. The SIMD loops prefetch the
//! weights ahead (`cpu::prefetch_ahead`).
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
    check_quantized(qa, w)?;
    Ok(matmul_with(Isa::best(), qa, w))
}

/// [`ternary_matmul_quantized`] for several matrices reading the same activations (q/k/v,
/// gate/up): one parallel loop over all their rows instead of one per matrix, so a decode step
/// waits for the pool's threads once per group, not once per matrix. Each output is the one
/// [`ternary_matmul_quantized`] gives, to the bit.
pub fn ternary_matmul_quantized_many(
    qa: &QuantizedActivations,
    ws: &[&PackedTernary],
) -> Result<Vec<Vec<f32>>> {
    for w in ws {
        check_quantized(qa, w)?;
    }
    Ok(matmul_many_with(Isa::best(), qa, ws))
}

/// An error unless `qa` was quantised for `w`'s `k` and holds `m` whole rows with their scales
/// and sums.
fn check_quantized(qa: &QuantizedActivations, w: &PackedTernary) -> Result<()> {
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
    check_len(KERNEL, "activation sums", qa.sum.len(), qa.m, &shape)
}

/// The instruction sets the product can take, best last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Scalar,
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd` takes unsigned codes times signed activations into i32 lanes in
    /// one instruction where AVX2 takes three (`maddubs`, an add, `madd`), 64 weights a vector.
    Avx512Vnni,
}

impl Isa {
    /// What this CPU has. Called for every product (each decoded token's GEMVs): no allocation,
    /// and the feature checks are cached by the standard library.
    pub(crate) fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if vnni::available() {
                return Isa::Avx512Vnni;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Every form this CPU runs, the scalar one first (the tests run each).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                out.push(Isa::Avx2);
            }
            if vnni::available() {
                out.push(Isa::Avx512Vnni);
            }
        }
        out
    }
}

/// [`ternary_matmul_quantized`] in the form `isa` (which the caller checked this CPU runs).
pub(crate) fn matmul_with(isa: Isa, qa: &QuantizedActivations, w: &PackedTernary) -> Vec<f32> {
    matmul_many_with(isa, qa, &[w]).pop().unwrap_or_default()
}

/// [`ternary_matmul_quantized_many`] in the form `isa`: the tasks of [`ROWS_PER_TASK`] rows of
/// every matrix in one parallel loop, each writing its rows of its matrix's output.
pub(crate) fn matmul_many_with(
    isa: Isa,
    qa: &QuantizedActivations,
    ws: &[&PackedTernary],
) -> Vec<Vec<f32>> {
    let m = qa.m;
    let mut ys: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0f32; m * w.n()]).collect();
    let outs: Vec<SharedMut<f32>> = ys.iter_mut().map(|y| SharedMut(y.as_mut_ptr())).collect();
    // `first[mat]` is matrix `mat`'s first task, `first[ws.len()]` the count of all: task `t` is
    // matrix `mat`'s task `t - first[mat]` for the last `mat` with `first[mat] <= t` (a matrix
    // without rows has no task).
    let mut first = vec![0usize];
    for w in ws {
        first.push(first[first.len() - 1] + w.n().div_ceil(ROWS_PER_TASK));
    }
    let tasks = first[ws.len()];
    // The VNNI loop reads activations two blocks at a time, interleaved (see `vnni`).
    let paired;
    let acts_all: &[i8] = if isa == Isa::Avx512Vnni {
        paired = vnni::pair_blocks(&qa.q, qa.k_padded);
        &paired
    } else {
        &qa.q
    };
    let tokens_per_pass = if isa == Isa::Avx512Vnni {
        MAX_TOKENS_PER_PASS
    } else {
        TOKENS_PER_PASS
    };
    (0..tasks).into_par_iter().for_each(|task| {
        let mat = first.partition_point(|&f| f <= task) - 1;
        let (w, out, task) = (ws[mat], outs[mat], task - first[mat]);
        let n = w.n();
        let rows = task * ROWS_PER_TASK..((task + 1) * ROWS_PER_TASK).min(n);
        let mut acc = [0i32; MAX_TOKENS_PER_PASS];
        for t0 in (0..m).step_by(tokens_per_pass) {
            let tokens = (m - t0).min(tokens_per_pass);
            let acts = &acts_all[t0 * qa.k_padded..(t0 + tokens) * qa.k_padded];
            for row in rows.clone() {
                let wrow = &w.bytes()[row * w.row_bytes()..(row + 1) * w.row_bytes()];
                row_dot(isa, wrow, acts, tokens, &mut acc);
                for (i, &a) in acc[..tokens].iter().enumerate() {
                    let t = t0 + i;
                    let v = (a - qa.sum[t]) as f32 / qa.scale[t] * w.scale();
                    // SAFETY: (t, row) of matrix `mat`'s output is written by this task only
                    // (its rows are disjoint from every other task's), inside that output.
                    unsafe { *out.ptr().add(t * n + row) = v };
                }
            }
        }
    });
    ys
}

/// Tokens the VNNI loop shares one unpacked pair of blocks across (eight accumulators and four
/// code vectors of 32 registers).
const MAX_TOKENS_PER_PASS: usize = 8;

/// `acc[t] = Σ_k code[k] · acts[t][k]` for one packed row and `tokens` activation rows (laid out
/// as `isa` reads them).
fn row_dot(
    isa: Isa,
    wrow: &[u8],
    acts: &[i8],
    tokens: usize,
    acc: &mut [i32; MAX_TOKENS_PER_PASS],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 is present (`Isa::best` or the tests checked); lengths are checked inside.
        Isa::Avx2 => unsafe { avx2::row_dot(wrow, acts, tokens, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/BW/VNNI are present (`Isa::best` or the tests checked); lengths are
        // checked inside.
        Isa::Avx512Vnni => unsafe { vnni::row_dot(wrow, acts, tokens, acc) },
        _ => row_dot_scalar(wrow, acts, tokens, acc),
    }
}

fn row_dot_scalar(wrow: &[u8], acts: &[i8], tokens: usize, acc: &mut [i32; MAX_TOKENS_PER_PASS]) {
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

    use super::{BLOCK, MAX_TOKENS_PER_PASS, TOKENS_PER_PASS};

    /// A packed block's four code vectors: vector `i` holds the codes of weights `32i..32i + 32`
    /// (bits `2i, 2i + 1` of each byte; the 16-bit shift brings the next byte's bits into the top
    /// of each byte, which the mask clears).
    #[target_feature(enable = "avx2")]
    pub(super) fn unpack(packed: __m256i) -> [__m256i; 4] {
        let mask = _mm256_set1_epi8(3);
        [
            _mm256_and_si256(packed, mask),
            _mm256_and_si256(_mm256_srli_epi16(packed, 2), mask),
            _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask),
            _mm256_and_si256(_mm256_srli_epi16(packed, 6), mask),
        ]
    }

    /// AVX2 form of [`super::row_dot_scalar`]. Per 32-byte block: four shift+mask steps give the
    /// codes of 4 × 32 consecutive weights; `maddubs` multiplies them (unsigned, ≤ 2) by the
    /// signed activations into i16 pairs (|·| ≤ 512), the four are summed (≤ 2048, no overflow)
    /// and widened to i32 by `madd` with ones.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn row_dot(
        wrow: &[u8],
        acts: &[i8],
        tokens: usize,
        acc: &mut [i32; MAX_TOKENS_PER_PASS],
    ) {
        let kp = wrow.len() * 4;
        assert!(tokens <= TOKENS_PER_PASS && acts.len() >= tokens * kp);
        let ones = _mm256_set1_epi16(1);
        let mut sums = [_mm256_setzero_si256(); TOKENS_PER_PASS];
        for b in 0..kp / BLOCK {
            // SAFETY: block b of the row is 32 bytes inside `wrow` (kp = 4 · wrow.len()).
            let packed = unsafe { _mm256_loadu_si256(wrow.as_ptr().add(b * 32) as *const __m256i) };
            crate::cpu::prefetch_ahead(wrow.as_ptr().wrapping_add(b * 32));
            let codes = unpack(packed);
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

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{BLOCK, MAX_TOKENS_PER_PASS};

    pub(super) fn available() -> bool {
        crate::cpu::avx512_allowed()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    /// Activation rows (`k_padded` each) with each pair of blocks interleaved for 64-byte loads:
    /// for blocks `2p` and `2p + 1` and `i = 0..4`, the 32 activations `32i..32i + 32` of block
    /// `2p`, then the same 32 of block `2p + 1`. A 64-byte load of the packed row covers the same
    /// two blocks, and its code vector `i` (one shift and one mask) holds the codes of exactly
    /// those weights, in that order. A last unpaired block stays as it is.
    pub(super) fn pair_blocks(q: &[i8], k_padded: usize) -> Vec<i8> {
        let mut out = Vec::with_capacity(q.len());
        for row in q.chunks_exact(k_padded) {
            let mut pairs = row.chunks_exact(2 * BLOCK);
            for pair in &mut pairs {
                let (a, b) = pair.split_at(BLOCK);
                for i in 0..4 {
                    out.extend_from_slice(&a[32 * i..32 * i + 32]);
                    out.extend_from_slice(&b[32 * i..32 * i + 32]);
                }
            }
            out.extend_from_slice(pairs.remainder());
        }
        out
    }

    /// Two packed blocks' (64 bytes') four code vectors: vector `i` holds, per byte, bits
    /// `2i, 2i + 1` (the 16-bit shift brings the next byte's bits into the top, which the mask
    /// clears), the layout [`pair_blocks`] gives the activations.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn unpack(packed: __m512i) -> [__m512i; 4] {
        let mask = _mm512_set1_epi8(3);
        [
            _mm512_and_si512(packed, mask),
            _mm512_and_si512(_mm512_srli_epi16(packed, 2), mask),
            _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask),
            _mm512_and_si512(_mm512_srli_epi16(packed, 6), mask),
        ]
    }

    /// [`super::row_dot_scalar`] on activations laid out by [`pair_blocks`]: per pair of blocks
    /// one 64-byte load of codes, four shift+mask steps, and per token four `vpdpbusd` (codes
    /// unsigned, activations signed, into i32 lanes: |Σ| ≤ 2 · 128 · k, no overflow for any k
    /// a row can have here). A last unpaired block takes the 256-bit form of the same.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl")]
    pub(super) unsafe fn row_dot(
        wrow: &[u8],
        acts: &[i8],
        tokens: usize,
        acc: &mut [i32; MAX_TOKENS_PER_PASS],
    ) {
        let kp = wrow.len() * 4;
        assert!(tokens <= MAX_TOKENS_PER_PASS && acts.len() >= tokens * kp);
        if tokens == 1 {
            // SAFETY: the caller's guarantee (the features), lengths asserted above.
            acc[0] = unsafe { row_dot_one(wrow, acts) };
            return;
        }
        let blocks = kp / BLOCK;
        let mut sums = [_mm512_setzero_si512(); MAX_TOKENS_PER_PASS];
        for p in 0..blocks / 2 {
            // SAFETY: blocks 2p and 2p + 1 are the 64 bytes at 64·p inside `wrow`.
            let packed = unsafe { _mm512_loadu_si512(wrow.as_ptr().add(64 * p) as *const _) };
            crate::cpu::prefetch_ahead(wrow.as_ptr().wrapping_add(64 * p));
            let codes = unpack(packed);
            for (t, sum) in sums.iter_mut().enumerate().take(tokens) {
                // SAFETY: token t's pair p is the 256 bytes at t·kp + 256·p, inside `acts`
                // (asserted); each load below is 64 of them, unaligned.
                unsafe {
                    let x = acts.as_ptr().add(t * kp + 2 * BLOCK * p);
                    for (i, c) in codes.iter().enumerate() {
                        let a = _mm512_loadu_si512(x.add(64 * i) as *const _);
                        *sum = _mm512_dpbusd_epi32(*sum, *c, a);
                    }
                }
            }
        }
        let mut tail = [_mm256_setzero_si256(); MAX_TOKENS_PER_PASS];
        if blocks % 2 == 1 {
            let b = blocks - 1;
            // SAFETY: the last block is the 32 bytes at 32·b inside `wrow`.
            let packed = unsafe { _mm256_loadu_si256(wrow.as_ptr().add(32 * b) as *const _) };
            let codes = super::avx2::unpack(packed);
            for (t, sum) in tail.iter_mut().enumerate().take(tokens) {
                for (i, &c) in codes.iter().enumerate() {
                    // SAFETY: token t's last block is 128 bytes at t·kp + 128·b, left in place by
                    // `pair_blocks`; each load is 32 of them.
                    let a = unsafe {
                        _mm256_loadu_si256(
                            acts.as_ptr().add(t * kp + BLOCK * b + 32 * i) as *const _
                        )
                    };
                    *sum = _mm256_dpbusd_epi32(*sum, c, a);
                }
            }
        }
        for ((a, s), t) in acc.iter_mut().zip(sums).zip(tail).take(tokens) {
            // SAFETY: `__m256i` and `[i32; 8]` have the same size, and every bit pattern is a
            // valid i32.
            let lanes: [i32; 8] = unsafe { std::mem::transmute(t) };
            *a = _mm512_reduce_add_epi32(s) + lanes.iter().sum::<i32>();
        }
    }

    /// [`row_dot`] for one token (a GEMV): the same products, but each of a pair's four code
    /// vectors feeds its own accumulator. One accumulator would chain the pair's four
    /// `vpdpbusd` (about 5 cycles each), 20 cycles per 64 weight bytes, about as slow as one
    /// core's stream from memory (one thread, cold: 6.9 GB/s with one, 7.4 with four).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl")]
    unsafe fn row_dot_one(wrow: &[u8], acts: &[i8]) -> i32 {
        let kp = wrow.len() * 4;
        assert!(acts.len() >= kp);
        let blocks = kp / BLOCK;
        let mut sums = [_mm512_setzero_si512(); 4];
        for p in 0..blocks / 2 {
            // SAFETY: blocks 2p and 2p + 1 are the 64 bytes at 64·p inside `wrow`; the token's
            // pair p is the 256 bytes at 256·p inside `acts` (asserted); the loads are unaligned.
            unsafe {
                let packed = _mm512_loadu_si512(wrow.as_ptr().add(64 * p) as *const _);
                crate::cpu::prefetch_ahead(wrow.as_ptr().wrapping_add(64 * p));
                let x = acts.as_ptr().add(2 * BLOCK * p);
                let codes = unpack(packed);
                for (i, (sum, c)) in sums.iter_mut().zip(codes).enumerate() {
                    let a = _mm512_loadu_si512(x.add(64 * i) as *const _);
                    *sum = _mm512_dpbusd_epi32(*sum, c, a);
                }
            }
        }
        let mut tail = _mm256_setzero_si256();
        if blocks % 2 == 1 {
            let b = blocks - 1;
            // SAFETY: the last block is the 32 bytes at 32·b inside `wrow`, its activations the
            // 128 bytes at 128·b inside `acts`, left in place by `pair_blocks`.
            unsafe {
                let packed = _mm256_loadu_si256(wrow.as_ptr().add(32 * b) as *const _);
                for (i, &c) in super::avx2::unpack(packed).iter().enumerate() {
                    let a = _mm256_loadu_si256(acts.as_ptr().add(BLOCK * b + 32 * i) as *const _);
                    tail = _mm256_dpbusd_epi32(tail, c, a);
                }
            }
        }
        let total = _mm512_add_epi32(
            _mm512_add_epi32(sums[0], sums[1]),
            _mm512_add_epi32(sums[2], sums[3]),
        );
        // SAFETY: `__m256i` and `[i32; 8]` have the same size, and every bit pattern is a valid
        // i32.
        let lanes: [i32; 8] = unsafe { std::mem::transmute(tail) };
        _mm512_reduce_add_epi32(total) + lanes.iter().sum::<i32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary_matmul::ternary_matmul_reference;

    /// A xorshift generator from `seed` (nonzero): the tests' random codes and activations.
    fn xorshift(mut seed: u32) -> impl FnMut() -> u32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        }
    }

    /// Every form this CPU runs gives the scalar form's integer sums, so the same bits, and the
    /// reference's: token counts around each form's pass (4 and 8) and the VNNI threshold, odd
    /// and even block counts (the VNNI form pairs blocks), rows around a task (32).
    #[test]
    fn every_form_matches_the_scalar_one_and_the_reference() {
        let mut next = xorshift(0x9e37_79b9);
        let forms = Isa::available();
        println!("forms checked against the scalar one: {forms:?}");
        for (n, k) in [
            (1, 1),
            (33, 128),
            (5, 256),
            (70, 384),
            (3, 1000),
            (40, 2560),
        ] {
            let codes: Vec<i8> = (0..n * k).map(|_| (next() % 3) as i8 - 1).collect();
            let w = PackedTernary::from_ternary(&codes, n, k, 0.37).unwrap();
            for m in [1, 3, 4, 5, 7, 8, 9, 16, 17] {
                let x: Vec<f32> = (0..m * k)
                    .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let qa = quantize_activations(&x, m, &w).unwrap();
                let scalar = matmul_with(Isa::Scalar, &qa, &w);
                let reference = ternary_matmul_reference(&x, m, &w).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&scalar), bits(&reference), "[{n}, {k}] m {m}");
                for &isa in &forms {
                    let got = matmul_with(isa, &qa, &w);
                    assert_eq!(bits(&got), bits(&scalar), "{isa:?} [{n}, {k}] m {m}");
                }
            }
        }
    }

    /// Several matrices in one parallel loop give each matrix's own product, to the bit, in every
    /// form: row counts under, at and past a task (32) side by side, so tasks map to the right
    /// matrix at every boundary; a matrix of another `k` is an error naming it, none is no output.
    #[test]
    fn several_matrices_in_one_loop_equal_each_alone() {
        let mut next = xorshift(0x2545_f491);
        let k = 384;
        let mut matrix = |n: usize, scale: f32| {
            let codes: Vec<i8> = (0..n * k).map(|_| (next() % 3) as i8 - 1).collect();
            PackedTernary::from_ternary(&codes, n, k, scale).unwrap()
        };
        let ws = [
            matrix(1, 0.5),
            matrix(32, 0.25),
            matrix(70, 2.0),
            matrix(33, 1.0),
            matrix(5, 0.75),
        ];
        let refs: Vec<&PackedTernary> = ws.iter().collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for m in [1, 5, 9] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 2001) as f32) / 1000.0 - 1.0)
                .collect();
            let qa = quantize_activations(&x, m, &ws[0]).unwrap();
            for isa in Isa::available() {
                let many = matmul_many_with(isa, &qa, &refs);
                assert_eq!(many.len(), ws.len());
                for (w, got) in ws.iter().zip(&many) {
                    let alone = matmul_with(isa, &qa, w);
                    assert_eq!(bits(got), bits(&alone), "{isa:?} n {} m {m}", w.n());
                }
            }
            let public = ternary_matmul_quantized_many(&qa, &refs).unwrap();
            for (w, got) in ws.iter().zip(&public) {
                assert_eq!(bits(got), bits(&ternary_matmul_quantized(&qa, w).unwrap()));
            }
        }
        let qa = quantize_activations(&vec![0.5; k], 1, &ws[0]).unwrap();
        let other = PackedTernary::from_ternary(&vec![1; 4 * 256], 4, 256, 1.0).unwrap();
        let err = ternary_matmul_quantized_many(&qa, &[&ws[0], &other])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("quantized activations") && err.contains("k 256"),
            "{err}"
        );
        assert!(ternary_matmul_quantized_many(&qa, &[]).unwrap().is_empty());
    }
}
