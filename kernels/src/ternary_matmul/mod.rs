//! Ternary matmul: `y = x · Wᵀ` with ternary `W ∈ {−1, 0, +1}` (BitNet b1.58, docs/bitnet.md §1) or
//! binary
//! `W ∈ {−1, +1}` (the original BitNet), stored packed at 2 bits per weight from load to matmul,
//! and int8 activations quantised per token by absmax:
//!
//! ```text
//! s_x  = 127 / max(max_j |x_j|, 1e-5)                  per token (row of x)
//! x_q  = clamp(round_half_even(x · s_x), −128, 127)    int8
//! y    = (Σ_k x_q[k] · W[n, k]) / s_x · β               i32 accumulation, β the weight scale
//! ```
//!
//! # Packed layout (ours; see [`PackedTernary`])
//!
//! Each output row `n` is `k_padded = ceil(k / 128) · 128` weights long, padded with zeros, stored
//! as `k_padded / 4` bytes. The row is cut into blocks of 128 weights, 32 bytes each; byte `j` of
//! block `b` holds the weights at `k = 128·b + j + 32·i` in bits `2i, 2i+1` for `i = 0..4`, as the
//! code `w + 1 ∈ {0, 1, 2}`. So one shift and one mask of 32 bytes give 32 *consecutive* weights,
//! which line up with 32 consecutive int8 activations: AVX2's `maddubs` (unsigned codes × signed
//! activations) on the CPU, `__dp4a` on 4-byte words on the GPU. Codes are `w + 1`, so each dot
//! product is corrected by the token's activation sum: `Σ x_q·w = Σ x_q·code − Σ x_q`.
//!
//! Forms: [`ternary_matmul_reference`] (plain loops, unpacking one weight at a time),
//! [`ternary_matmul_cpu`] (AVX2 with a scalar fallback, and AVX-512 VNNI's `vpdpbusd` for eight
//! tokens or more, threaded over output rows; a GEMV for one token and a GEMM reusing each
//! unpacked block across tokens), and `kernels/cuda/ternary_matmul.cu`
//! (activation quantisation, a `__dp4a` GEMV and a tiled GEMM) with [`plan::plan`].
mod fast;
mod op;
mod pack;
pub mod plan;
mod reference;

pub use fast::{
    quantize_activations, ternary_matmul_cpu, ternary_matmul_quantized,
    ternary_matmul_quantized_many,
};
pub use op::{ternary_matmul, ternary_matmul_shared, TernaryWeights};
pub use reference::ternary_matmul_reference;

use crate::error::{check_dims, check_len, KernelError, Result};

pub(crate) const KERNEL: &str = "ternary_matmul";

/// Weights per packed block (32 bytes).
pub const BLOCK: usize = crate::params::FRUGAL_TERNARY_BLOCK as usize;

/// A ternary (or binary) weight matrix `[n, k]` packed at 2 bits per weight, and its scale `β`.
#[derive(Clone, PartialEq)]
pub struct PackedTernary {
    n: usize,
    k: usize,
    k_padded: usize,
    /// On huge pages where offered: decode streams these every token.
    bytes: crate::huge_bytes::HugeBytes,
    scale: f32,
}

impl std::fmt::Debug for PackedTernary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedTernary")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("k_padded", &self.k_padded)
            .field("bytes", &self.bytes.len())
            .field("scale", &self.scale)
            .finish()
    }
}

impl PackedTernary {
    /// Output features (rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns).
    pub fn k(&self) -> usize {
        self.k
    }

    /// `k` rounded up to a whole number of blocks.
    pub fn k_padded(&self) -> usize {
        self.k_padded
    }

    /// The dequantisation scale `β`: `W ≈ β · W_t`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The packed bytes, `[n, k_padded / 4]`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.k_padded / 4
    }

    /// Bytes held: the packed weights and the scale.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<f32>()
    }

    /// The weight at `[row, col]`, in {−1, 0, 1}; callers keep `row < n` and `col < k`.
    pub(crate) fn get(&self, row: usize, col: usize) -> i8 {
        assert!(
            row < self.n && col < self.k,
            "({row}, {col}) outside [{}, {}]",
            self.n,
            self.k
        );
        let (block, within) = (col / BLOCK, col % BLOCK);
        let byte = self.bytes[row * self.row_bytes() + block * (BLOCK / 4) + within % 32];
        ((byte >> (2 * (within / 32))) & 3) as i8 - 1
    }

    /// Every weight as i8 `[n, k]`: for tests and inspection only (the matmuls never do this).
    pub fn to_ternary(&self) -> Vec<i8> {
        (0..self.n)
            .flat_map(|r| (0..self.k).map(move |c| (r, c)))
            .map(|(r, c)| self.get(r, c))
            .collect()
    }

    fn shape_check(n: usize, k: usize) -> Result<()> {
        check_dims(
            KERNEL,
            &[("n (output features)", n), ("k (input features)", k)],
        )
    }
}

/// The shape of one matmul: `m` tokens of `k` features times the `[n, k]` weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TernaryShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub k_padded: usize,
}

impl std::fmt::Display for TernaryShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[m {}] x [n {}, k {}]", self.m, self.n, self.k)
    }
}

impl TernaryShape {
    /// Validates `x` (`[m, k]` f32) against the weights.
    pub fn of(x: &[f32], m: usize, w: &PackedTernary) -> Result<Self> {
        check_dims(KERNEL, &[("m (tokens)", m)])?;
        let shape = TernaryShape {
            m,
            n: w.n,
            k: w.k,
            k_padded: w.k_padded,
        };
        check_len(KERNEL, "x", x.len(), m * w.k, &shape)?;
        Ok(shape)
    }
}

/// Int8 activations `[m, k_padded]` (zero past `k`), their per-token scales `s_x` and sums.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedActivations {
    pub m: usize,
    pub k: usize,
    pub k_padded: usize,
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
    pub sum: Vec<i32>,
}

/// `s_x = 127 / max(max|x|, 1e-5)` and `x_q = clamp(round_half_even(x · s_x), −128, 127)`, as
/// HF's `ActQuant` and the BitNet GPU code (`torch.round` rounds half to even).
pub(crate) fn quantize_row(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    crate::cpu_math::simd(
        #[inline(always)]
        || {
            // Eight running maxima (max is exact, so their order does not matter; a NaN is
            // skipped either way), so the pass vectorises; `round_ties_even` is one instruction
            // with AVX, a library call without.
            let mut lanes = [0.0f32; 8];
            let mut eight = x.chunks_exact(8);
            for c in &mut eight {
                for (l, v) in lanes.iter_mut().zip(c) {
                    *l = l.max(v.abs());
                }
            }
            let amax = eight
                .remainder()
                .iter()
                .chain(&lanes)
                .fold(0.0f32, |m, v| m.max(v.abs()));
            let s = 127.0 / amax.max(1e-5);
            let mut sum = 0i32;
            for (o, &v) in q.iter_mut().zip(x) {
                let r = (v * s).round_ties_even().clamp(-128.0, 127.0) as i8;
                *o = r;
                sum += i32::from(r);
            }
            (s, sum)
        },
    )
}

/// Rejects a weight scale that is not a positive finite number.
fn check_scale(scale: f32) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        return Ok(());
    }
    Err(KernelError::Invalid {
        kernel: KERNEL,
        arg: "scale",
        message: format!("the weight scale must be positive and finite, found {scale}"),
    })
}
