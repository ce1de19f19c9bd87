//! An opt-in 4-bit output head: a decoder's vocabulary-sized last GEMV (BitNet 2B4T's tied
//! embedding is 128256 × 2560, most of the bytes of a decode step) over weights quantised to 4
//! bits in groups of 32 with activations quantised to 8 bits per group, the scheme of
//! llama.cpp's Q4_0 × Q8_0 dot product (written here from its description, not its code).
//! It is lossy: the logits move (each crate that offers it states by how much on its fixtures).
//!
//! Format, per row of `k` values, in groups of [`GROUP`]:
//! - weights: `w ≈ (q − 8) · s`, `q ∈ 1..=15` (a 4-bit code), `s ≈ max|w| / 7` per group, a bf16
//!   (widened by a shift, no conversion instruction);
//! - two groups share 32 bytes: byte `t` holds the first group's `q_t` in its low nibble and the
//!   second's in its high nibble, so one 32-byte load and two masks give both groups' codes;
//! - activations: `x ≈ p · r`, `p ∈ −127..=127` (i8), `r = max|x| / 127` per group.
//!
//! `y = Σ_groups s · r · Σ_t (q_t − 8) p_t`: the inner sum is exact in integers (on AVX2, one
//! `maddubs` of the 32 unsigned codes against the 32 signed activations per group; the `− 8`
//! is taken out once per group as `8 · Σ p`). Bytes per weight: 0.5 + 2/32 = 0.5625 (4.5 bits),
//! against 2 for bf16 and about 0.82 for llama.cpp's Q6_K.
use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};

/// Values per quantisation group.
pub const GROUP: usize = 32;
const KERNEL: &str = "quant_head";

/// A `[rows, cols]` matrix in the 4-bit format above.
#[derive(Debug, Clone)]
pub struct Q4Matrix {
    rows: usize,
    cols: usize,
    /// Group pairs per row (the last pair's second group is zero when a row has an odd count).
    pairs: usize,
    /// `[rows, pairs, 32]` bytes of two codes each.
    codes: crate::huge_bytes::HugeBytes,
    /// `[rows, 2 · pairs]` group scales.
    scales: Vec<half::bf16>,
}

/// One row of activations, quantised per group.
#[derive(Debug, Clone)]
pub struct Q8Row {
    /// `[2 · pairs · 32]` codes (zero-padded).
    codes: Vec<i8>,
    /// Per group: the scale `r`.
    scales: Vec<f32>,
    /// Per group: `8 · r · Σ p`, the part of `Σ (q − 8) p · r` the weights' offset takes away.
    offsets: Vec<f32>,
}

impl Q4Matrix {
    /// Quantises `w` (`[rows, cols]`, row-major). `cols` must be a positive multiple of
    /// [`GROUP`]; every value finite.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let shape = format!("[{rows}, {cols}]");
        check_len(KERNEL, "w", w.len(), rows * cols, &shape)?;
        if cols == 0 || !cols.is_multiple_of(GROUP) {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "w",
                message: format!(
                    "{cols} columns: the 4-bit head needs a positive multiple of {GROUP}"
                ),
            });
        }
        if let Some(bad) = w.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "w",
                message: format!("a non-finite weight ({}) at index {bad}", w[bad]),
            });
        }
        let groups = cols / GROUP;
        let pairs = groups.div_ceil(2);
        let mut codes = crate::huge_bytes::HugeBytes::filled(rows * pairs * GROUP, 0x88);
        let mut scales = vec![half::bf16::ZERO; rows * 2 * pairs];
        codes
            .par_chunks_mut(pairs * GROUP)
            .zip(scales.par_chunks_mut(2 * pairs))
            .zip(w.par_chunks(cols))
            .for_each(|((codes, scales), row)| {
                for (g, values) in row.chunks(GROUP).enumerate() {
                    let amax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    // The codes are taken against the scale as stored (rounded to bf16).
                    let stored = half::bf16::from_f32(amax / 7.0);
                    scales[g] = stored;
                    let s = stored.to_f32();
                    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
                    let (pair, shift) = (g / 2, 4 * (g % 2));
                    for (t, v) in values.iter().enumerate() {
                        let q = ((v * inv).round().clamp(-7.0, 7.0) as i32 + 8) as u8;
                        let byte = &mut codes[pair * GROUP + t];
                        *byte = (*byte & !(0x0f << shift)) | (q << shift);
                    }
                }
            });
        Ok(Q4Matrix {
            rows,
            cols,
            pairs,
            codes,
            scales,
        })
    }

    /// [`Q4Matrix::quantize`] of a `[rows, cols]` tensor of any float dtype on the CPU (the
    /// 4-bit head has no GPU path: other devices are an error naming theirs).
    pub fn from_tensor(w: &candle_core::Tensor) -> candle_core::Result<Self> {
        if !w.device().is_cpu() {
            return Err(crate::op::unsupported(KERNEL, w.device(), w.dtype()));
        }
        let (rows, cols) = w.dims2()?;
        let values: Vec<f32> = w
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        Q4Matrix::quantize(&values, rows, cols).map_err(crate::op::wrap)
    }

    /// `x [.., cols]` (any float dtype, on the CPU) times the matrix: `[.., rows]` in f32.
    pub fn forward(&self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        crate::op::host_gemv_forward(KERNEL, x, (self.rows, self.cols), |v, m| self.gemv(v, m))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: codes and scales.
    pub fn bytes(&self) -> usize {
        self.codes.len() + 2 * self.scales.len()
    }

    /// The value the format stores for (row, col): `(q − 8) · s`.
    pub fn dequantized(&self, row: usize, col: usize) -> f32 {
        let (g, t) = (col / GROUP, col % GROUP);
        let byte = self.codes[(row * self.pairs + g / 2) * GROUP + t];
        let q = (byte >> (4 * (g % 2))) & 0x0f;
        (i32::from(q) - 8) as f32 * self.scales[row * 2 * self.pairs + g].to_f32()
    }

    /// Quantises one row of activations (`cols` values) for [`Q4Matrix::gemv`].
    pub fn quantize_input(&self, x: &[f32]) -> Result<Q8Row> {
        check_len(KERNEL, "x", x.len(), self.cols, &format!("[{}]", self.cols))?;
        let groups = 2 * self.pairs;
        let mut row = Q8Row {
            codes: vec![0; groups * GROUP],
            scales: vec![0.0; groups],
            offsets: vec![0.0; groups],
        };
        for (g, values) in x.chunks(GROUP).enumerate() {
            let amax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let r = amax / 127.0;
            let inv = if r > 0.0 { 1.0 / r } else { 0.0 };
            let mut sum = 0i32;
            for (c, v) in row.codes[g * GROUP..].iter_mut().zip(values) {
                let p = (v * inv).round().clamp(-127.0, 127.0) as i8;
                *c = p;
                sum += i32::from(p);
            }
            row.scales[g] = r;
            row.offsets[g] = 8.0 * r * sum as f32;
        }
        Ok(row)
    }

    /// `y [m, rows] = x [m, cols] · selfᵀ` with each row of `x` quantised per group: threaded
    /// over output rows, AVX2 where the CPU has it.
    pub fn gemv(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let shape = format!("[m {m}, rows {}, cols {}]", self.rows, self.cols);
        check_len(KERNEL, "x", x.len(), m * self.cols, &shape)?;
        let inputs = (0..m)
            .map(|t| self.quantize_input(&x[t * self.cols..(t + 1) * self.cols]))
            .collect::<Result<Vec<_>>>()?;
        let fma = crate::cpu::fma_available();
        Ok(crate::cpu_linear::rows_times_inputs(
            self.rows,
            &inputs,
            true,
            |row, input| self.row_dot(fma, row, input),
        ))
    }

    fn row_dot(&self, fma: bool, row: usize, x: &Q8Row) -> f32 {
        let codes = &self.codes[row * self.pairs * GROUP..][..self.pairs * GROUP];
        let scales = &self.scales[row * 2 * self.pairs..][..2 * self.pairs];
        #[cfg(target_arch = "x86_64")]
        if fma {
            // SAFETY: AVX2 and FMA are present (checked at run time by `fma`); the slices hold
            // `pairs` pairs of groups on both sides.
            return unsafe { row_dot_avx2(codes, scales, x) };
        }
        let _ = fma;
        row_dot_scalar(codes, scales, x)
    }
}

/// The plain form: per group, the integer sum, then its scales.
fn row_dot_scalar(codes: &[u8], scales: &[half::bf16], x: &Q8Row) -> f32 {
    let mut total = 0.0f64;
    for (g, (&s, (&r, &offset))) in scales
        .iter()
        .zip(x.scales.iter().zip(&x.offsets))
        .enumerate()
    {
        let (pair, shift) = (g / 2, 4 * (g % 2));
        let dot: i32 = (0..GROUP)
            .map(|t| {
                let q = (codes[pair * GROUP + t] >> shift) & 0x0f;
                i32::from(q) * i32::from(x.codes[g * GROUP + t])
            })
            .sum();
        total += f64::from(s.to_f32()) * (f64::from(r) * f64::from(dot) - f64::from(offset));
    }
    total as f32
}

/// Eight 32-bit partial sums of one pair of groups' integer products: `Σ q·p` over each
/// group's 32 codes, four products per lane.
///
/// # Safety
/// AVX2 present; `bytes` points at one pair's 32 code bytes and `xa` at the pair's 64
/// activation codes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pair_sums(
    bytes: *const u8,
    xa: *const i8,
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract: AVX2 present, 32 code bytes at `bytes`, 64 activation
    // codes at `xa`.
    unsafe {
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let both = _mm256_loadu_si256(bytes as *const __m256i);
        let a = _mm256_loadu_si256(xa as *const __m256i);
        let b = _mm256_loadu_si256(xa.add(GROUP) as *const __m256i);
        let qa = _mm256_and_si256(both, low);
        let qb = _mm256_and_si256(_mm256_srli_epi16(both, 4), low);
        // Unsigned codes times signed activations, adjacent pairs summed (at most 2·15·127),
        // then pairs of those.
        (
            _mm256_madd_epi16(_mm256_maddubs_epi16(qa, a), ones),
            _mm256_madd_epi16(_mm256_maddubs_epi16(qb, b), ones),
        )
    }
}

/// Horizontal sum of eight f32 lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_sum(v: std::arch::x86_64::__m256) -> f32 {
    // SAFETY: `__m256` and `[f32; 8]` have the same size, and every bit pattern is a valid f32.
    let lanes: [f32; 8] = unsafe { std::mem::transmute(v) };
    lanes.iter().sum()
}

/// Four pairs (eight groups) per step: the eight groups' integer sums are folded into one
/// vector (`hadd`s and a lane swap), so their scales are applied by one vector multiply-add
/// with the eight bf16 scales widened together, and the offsets by another, instead of a
/// scalar multiply and a broadcast per group (which made the loop compute-bound, below the
/// memory's pace). Pairs past the last whole four go one at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dot_avx2(codes: &[u8], scales: &[half::bf16], x: &Q8Row) -> f32 {
    use std::arch::x86_64::*;
    const QUAD: usize = 4 * GROUP; // code bytes of four pairs
    let pairs = codes.len() / GROUP;
    let quads = pairs / 4;
    let mut acc = _mm256_setzero_ps();
    let mut offset = _mm256_setzero_ps();
    for quad in 0..quads {
        let g0 = 8 * quad;
        // SAFETY: pairs 4·quad..4·quad + 4 exist: their code bytes lie in `codes`, their 256
        // activation codes and eight scales, offsets and weight scales in `x` and `scales`.
        let (v, w8, xs, xo) = unsafe {
            let c = codes.as_ptr().add(quad * QUAD);
            crate::cpu::prefetch_ahead(c);
            crate::cpu::prefetch_ahead(c.add(64));
            // The scales' stream, an eighth as long as the codes': as far ahead in weights.
            crate::cpu::prefetch(
                (scales.as_ptr().add(g0) as *const u8).wrapping_add(crate::cpu::PREFETCH_AHEAD / 8),
            );
            let xc = x.codes.as_ptr().add(g0 * GROUP);
            let v = [
                pair_sums(c, xc),
                pair_sums(c.add(GROUP), xc.add(2 * GROUP)),
                pair_sums(c.add(2 * GROUP), xc.add(4 * GROUP)),
                pair_sums(c.add(3 * GROUP), xc.add(6 * GROUP)),
            ];
            let raw = _mm_loadu_si128(scales.as_ptr().add(g0) as *const __m128i);
            // bf16 widens by a shift into the top half of an f32.
            let w8 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
            let xs = _mm256_loadu_ps(x.scales.as_ptr().add(g0));
            let xo = _mm256_loadu_ps(x.offsets.as_ptr().add(g0));
            (v, w8, xs, xo)
        };
        // [g0, g1, g2, g3 | same, upper lanes], then [g4..g7 | ...]; adding the two 128-bit
        // halves of each gives the eight groups' sums in order.
        let h01 = _mm256_hadd_epi32(v[0].0, v[0].1);
        let h23 = _mm256_hadd_epi32(v[1].0, v[1].1);
        let h45 = _mm256_hadd_epi32(v[2].0, v[2].1);
        let h67 = _mm256_hadd_epi32(v[3].0, v[3].1);
        let lo4 = _mm256_hadd_epi32(h01, h23);
        let hi4 = _mm256_hadd_epi32(h45, h67);
        let sums = _mm256_add_epi32(
            _mm256_permute2x128_si256(lo4, hi4, 0x20),
            _mm256_permute2x128_si256(lo4, hi4, 0x31),
        );
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(w8, xs), acc);
        offset = _mm256_fmadd_ps(w8, xo, offset);
    }
    let wide = |s: half::bf16| f32::from_bits(u32::from(s.to_bits()) << 16);
    let mut tail = 0.0f32;
    for pair in 4 * quads..pairs {
        let (g0, g1) = (2 * pair, 2 * pair + 1);
        // SAFETY: pair `pair` has 32 code bytes in `codes` and 64 activation codes in `x`
        // (padded to whole pairs).
        let (ia, ib) = unsafe {
            pair_sums(
                codes.as_ptr().add(pair * GROUP),
                x.codes.as_ptr().add(g0 * GROUP),
            )
        };
        let (wa, wb) = (wide(scales[g0]), wide(scales[g1]));
        let (sa, sb) = (wa * x.scales[g0], wb * x.scales[g1]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_set1_ps(sa), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), _mm256_set1_ps(sb), acc);
        tail += wa * x.offsets[g0] + wb * x.offsets[g1];
    }
    lane_sum(acc) - lane_sum(offset) - tail
}

/// The reference: the same quantised values, dequantised and multiplied in f64 (no integer
/// tricks, no offset split).
pub fn q4_gemv_reference(w: &Q4Matrix, x: &[f32], m: usize) -> Result<Vec<f32>> {
    let shape = format!("[m {m}, rows {}, cols {}]", w.rows, w.cols);
    check_len(KERNEL, "x", x.len(), m * w.cols, &shape)?;
    let mut y = Vec::with_capacity(m * w.rows);
    for xr in x.chunks(w.cols.max(1)).take(m) {
        let q = w.quantize_input(xr)?;
        for row in 0..w.rows {
            let mut total = 0.0f64;
            for col in 0..w.cols {
                let g = col / GROUP;
                let xv = f64::from(q.codes[col]) * f64::from(q.scales[g]);
                total += f64::from(w.dequantized(row, col)) * xv;
            }
            y.push(total as f32);
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Q4Matrix;

    /// The AVX2 path and the portable one (CPUs without AVX2) give the same sums: rows of
    /// pairs only past the last whole four (160 columns), exactly one four (256), and fours
    /// with a padded pair after them (19 groups).
    #[test]
    fn both_cpu_paths_agree() {
        if !crate::cpu::fma_available() {
            eprintln!("SKIPPED: no AVX2/FMA on this CPU, only the portable path runs");
            return;
        }
        for (rows, cols) in [(9, 160), (5, 256), (4, 32 * 19)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                .collect();
            let q = Q4Matrix::quantize(&w, rows, cols).unwrap();
            let input = q.quantize_input(&x).unwrap();
            for row in 0..rows {
                let (a, b) = (q.row_dot(false, row, &input), q.row_dot(true, row, &input));
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "[{rows}, {cols}] row {row}: {a} vs {b}"
                );
            }
        }
    }
}
