//! Building [`PackedTernary`] from the forms checkpoints hold: ternary integers, the HF packed
//! layout, float master weights (absmean ternarisation) and float weights to binarise.
use super::{check_scale, PackedTernary, BLOCK, KERNEL};
use crate::error::{check_len, KernelError, Result};

/// `[n, k]` for error messages.
struct Dims(usize, usize);

impl std::fmt::Display for Dims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[n {}, k {}]", self.0, self.1)
    }
}

impl PackedTernary {
    /// Packs the codes `code(row, col) ∈ {0, 1, 2}` (`w + 1`) of an `[n, k]` matrix.
    fn pack_codes(n: usize, k: usize, scale: f32, code: impl Fn(usize, usize) -> u8) -> Self {
        let k_padded = k.div_ceil(BLOCK) * BLOCK;
        let row_bytes = k_padded / 4;
        // Padding holds the code of 0, so padded columns contribute nothing.
        let mut bytes = crate::huge_bytes::HugeBytes::filled(n * row_bytes, 0b0101_0101);
        for row in 0..n {
            let out = &mut bytes[row * row_bytes..(row + 1) * row_bytes];
            for col in 0..k {
                let (block, within) = (col / BLOCK, col % BLOCK);
                let byte = &mut out[block * (BLOCK / 4) + within % 32];
                let shift = 2 * (within / 32);
                *byte = (*byte & !(3 << shift)) | (code(row, col) << shift);
            }
        }
        PackedTernary {
            n,
            k,
            k_padded,
            bytes,
            scale,
        }
    }

    /// From ternary integers `[n, k]` in {−1, 0, 1} and the scale `β` (`W ≈ β · W_t`).
    pub fn from_ternary(w: &[i8], n: usize, k: usize, scale: f32) -> Result<Self> {
        Self::shape_check(n, k)?;
        check_len(KERNEL, "weights", w.len(), n * k, &Dims(n, k))?;
        check_scale(scale)?;
        if let Some(i) = w.iter().position(|v| !(-1..=1).contains(v)) {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "weights",
                message: format!(
                    "weight [{}, {}] is {}, not in {{-1, 0, 1}}",
                    i / k,
                    i % k,
                    w[i]
                ),
            });
        }
        Ok(Self::pack_codes(n, k, scale, |r, c| {
            (w[r * k + c] + 1) as u8
        }))
    }

    /// From HF's packed layout (`transformers.integrations.bitnet.pack_weights`): `uint8
    /// [n / 4, k]`, where bits `2i, 2i+1` of `packed[r, c]` hold `W_t[i · n/4 + r, c] + 1` (four
    /// contiguous row blocks). The code 3 is invalid there and an error here.
    pub fn from_hf_packed(packed: &[u8], n: usize, k: usize, scale: f32) -> Result<Self> {
        Self::shape_check(n, k)?;
        if !n.is_multiple_of(4) {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "n (output features)",
                message: format!("HF's packed layout needs a multiple of 4 rows, found {n}"),
            });
        }
        check_len(
            KERNEL,
            "packed weights",
            packed.len(),
            n / 4 * k,
            &Dims(n, k),
        )?;
        check_scale(scale)?;
        let quarter = n / 4;
        let hf_code =
            |r: usize, c: usize| (packed[(r % quarter) * k + c] >> (2 * (r / quarter))) & 3;
        if let Some((r, c)) = (0..n)
            .flat_map(|r| (0..k).map(move |c| (r, c)))
            .find(|&(r, c)| hf_code(r, c) == 3)
        {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "packed weights",
                message: format!("weight [{r}, {c}] has the code 3, which is no ternary value"),
            });
        }
        Ok(Self::pack_codes(n, k, scale, hf_code))
    }

    /// BitNet b1.58's absmean ternarisation of float master weights `[n, k]`, per tensor, as HF's
    /// `WeightQuant` (online mode) and BitNet's `quant_weight_int8`:
    /// `s = 1 / max(mean|W|, 1e-5)`, `W_t = clamp(round_half_even(W · s), −1, 1)`, `β = 1 / s`.
    pub fn ternarize_absmean(w: &[f32], n: usize, k: usize) -> Result<Self> {
        Self::shape_check(n, k)?;
        check_len(KERNEL, "weights", w.len(), n * k, &Dims(n, k))?;
        let s = 1.0 / mean_abs(w)?.max(1e-5);
        let code = |r: usize, c: usize| {
            ((w[r * k + c] * s).round_ties_even().clamp(-1.0, 1.0) + 1.0) as u8
        };
        Ok(Self::pack_codes(n, k, 1.0 / s, code))
    }

    /// The original BitNet's binarisation (Wang et al. 2023, eq. 1–3): `W_b = sign(W − α)` with
    /// `α = mean(W)` (sign(0) = −1 as the paper's `Sign`: +1 only where positive), `β = mean|W|`.
    /// Stored in the same 2-bit layout (codes 0 and 2), so one kernel serves both.
    pub fn binarize(w: &[f32], n: usize, k: usize) -> Result<Self> {
        Self::shape_check(n, k)?;
        check_len(KERNEL, "weights", w.len(), n * k, &Dims(n, k))?;
        let alpha = (w.iter().map(|&v| f64::from(v)).sum::<f64>() / w.len() as f64) as f32;
        let beta = mean_abs(w)?;
        check_scale(beta)?;
        Ok(Self::pack_codes(n, k, beta, |r, c| {
            if w[r * k + c] - alpha > 0.0 {
                2
            } else {
                0
            }
        }))
    }
}

/// `mean |W|` in f32 as torch computes it (pairwise sums are close enough: the sum is taken in
/// f64 and rounded once); an error for a non-finite weight.
fn mean_abs(w: &[f32]) -> Result<f32> {
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::Invalid {
            kernel: KERNEL,
            arg: "weights",
            message: format!("weight {i} is {}", w[i]),
        });
    }
    Ok((w.iter().map(|&v| f64::from(v.abs())).sum::<f64>() / w.len() as f64) as f32)
}
