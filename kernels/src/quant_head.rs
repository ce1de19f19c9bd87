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
    codes: Vec<u8>,
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
        if cols == 0 || cols % GROUP != 0 {
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
        let mut codes = vec![0x88u8; rows * pairs * GROUP];
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
        if !x.device().is_cpu() {
            return Err(crate::op::unsupported(KERNEL, x.device(), x.dtype()));
        }
        let mut dims = x.dims().to_vec();
        if dims.last() != Some(&self.cols) {
            return Err(crate::op::wrap(KernelError::Shape {
                kernel: KERNEL,
                arg: "x",
                expected: format!("[.., {}]", self.cols),
                found: dims,
            }));
        }
        let m = x.elem_count() / self.cols;
        let values: Vec<f32> = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let y = self.gemv(&values, m).map_err(crate::op::wrap)?;
        if let Some(last) = dims.last_mut() {
            *last = self.rows;
        }
        candle_core::Tensor::from_vec(y, dims, &candle_core::Device::Cpu)
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dot_avx2(codes: &[u8], scales: &[half::bf16], x: &Q8Row) -> f32 {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0.0f32;
    for (pair, bytes) in codes.chunks_exact(GROUP).enumerate() {
        // SAFETY: 32 bytes in `bytes`; groups 2·pair and 2·pair + 1 have 32 activation codes
        // each in `x.codes` (padded to whole pairs).
        let (both, xa, xb) = unsafe {
            (
                _mm256_loadu_si256(bytes.as_ptr() as *const __m256i),
                _mm256_loadu_si256(x.codes.as_ptr().add(2 * pair * GROUP) as *const __m256i),
                _mm256_loadu_si256(x.codes.as_ptr().add((2 * pair + 1) * GROUP) as *const __m256i),
            )
        };
        let qa = _mm256_and_si256(both, low);
        let qb = _mm256_and_si256(_mm256_srli_epi16(both, 4), low);
        // Unsigned codes times signed activations, adjacent pairs summed (at most 2·15·127),
        // then pairs of those: eight 32-bit sums per group.
        let ia = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xa), ones);
        let ib = _mm256_madd_epi16(_mm256_maddubs_epi16(qb, xb), ones);
        let (g0, g1) = (2 * pair, 2 * pair + 1);
        // bf16 scales widen by a shift into the top half of an f32.
        let wide = |s: half::bf16| f32::from_bits(u32::from(s.to_bits()) << 16);
        let (wa, wb) = (wide(scales[g0]), wide(scales[g1]));
        let (sa, sb) = (wa * x.scales[g0], wb * x.scales[g1]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_set1_ps(sa), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), _mm256_set1_ps(sb), acc);
        offset += wa * x.offsets[g0] + wb * x.offsets[g1];
    }
    // SAFETY: `__m256` and `[f32; 8]` have the same size, and every bit pattern is a valid f32.
    let lanes: [f32; 8] = unsafe { std::mem::transmute(acc) };
    lanes.iter().sum::<f32>() - offset
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

    /// The AVX2 path and the portable one (CPUs without AVX2) give the same sums.
    #[test]
    fn both_cpu_paths_agree() {
        let (rows, cols) = (9, 160);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let q = Q4Matrix::quantize(&w, rows, cols).unwrap();
        let input = q.quantize_input(&x).unwrap();
        if !crate::cpu::fma_available() {
            eprintln!("SKIPPED: no AVX2/FMA on this CPU, only the portable path runs");
            return;
        }
        for row in 0..rows {
            let (a, b) = (q.row_dot(false, row, &input), q.row_dot(true, row, &input));
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "row {row}: {a} vs {b}"
            );
        }
    }
}
