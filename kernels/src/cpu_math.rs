//! Elementwise math for the fast CPU paths: `exp`, `tanh`, the logistic sigmoid and GeLU (tanh form),
//! written branch-free so that the compiler vectorises the loops that call them (AVX-512 or AVX2 +
//! FMA where the CPU has them: sixteen or eight lanes instead of one libm call per element).
//!
//! Accuracy, checked against f64 in tests: `exp` within 2 ulp over its range; `sigmoid` and
//! `gelu_tanh` within 1e-6 relative (3e-7 absolute near 0), far below what the models' 1e-4
//! fixture tolerance needs.
use rayon::prelude::*;

/// `e^x` for f32: Cody–Waite reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-6 polynomial for
/// `e^r` (Cephes `expf` coefficients), and `2^n` built in the exponent bits. Inputs are clamped to
/// [-87, 88], so the result is finite and normal: `e^-87 ≈ 1.6e-38` stands in for anything
/// smaller, `e^88 ≈ 1.7e38` for anything larger (what sigmoid and GeLU need).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer (to nearest) held in the sum's low mantissa bits:
    // `n` comes out as a float and as integer bits with no float-to-int conversion, which has no
    // eight-lane form with Rust's saturating `as`.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let er = (p * r).mul_add(r, r) + 1.0;
    // n is in [-126, 127]: a normal power of two, its biased exponent n + 127.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    er * two_n
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`: within 2e-7 absolute of the true value (relative accuracy is
/// lost only for |x| below about 1e-3, where the value itself is that small).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Gemma's logit soft cap, `cap · tanh(v / cap)`, of every value; threaded for large inputs.
pub fn soft_cap(values: &[f32], cap: f32) -> Vec<f32> {
    map2(
        values,
        values,
        #[inline(always)]
        |v, _| cap * tanh(v / cap),
    )
}

/// GeLU, tanh approximation (torch's `gelu(approximate="tanh")`, HF `gelu_pytorch_tanh`):
/// `0.5·x·(1 + tanh(u))` with `u = sqrt(2/π)·(x + 0.044715·x³)`, computed as the equal
/// `x · sigmoid(2u)`, which has no cancellation near 0 and saturates cleanly.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// Below this many elements, threading costs more than it saves (waking the pool from outside
/// costs tens of microseconds; a thread streams 64K floats in about as long).
pub(crate) const PARALLEL_MIN: usize = 1 << 16;
/// Elements per task.
const CHUNK: usize = 1 << 12;

/// Runs `f` compiled for AVX-512 where the CPU has it (F, BW, VL: its loops vectorise sixteen
/// lanes wide; Griffin small's 512-token prefill, whose RG-LRU, GeLU and norms run here, took
/// 1.01–1.06× less time than with eight), else for AVX2 + FMA where it has those, else as is. The
/// closure is inlined into a function built with those features: the same source on every path,
/// elementwise values the same at any width (sums, such as a norm's mean of squares, add in
/// another order).
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu_gemm::available() {
            // SAFETY: the CPU has AVX-512 F, BW and VL (checked just above), and with them AVX2
            // and FMA.
            return unsafe { avx512(f) };
        }
        if crate::cpu::fma_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { avx2_fma(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f(a_i, b_i)` for every i (equal lengths), in vectorised chunks, threaded for large inputs.
#[inline(always)]
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    let run = |(o, (a, b)): (&mut [f32], (&[f32], &[f32]))| {
        simd(
            #[inline(always)]
            || {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = f(a, b);
                }
            },
        )
    };
    if a.len() >= PARALLEL_MIN {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(run);
    } else {
        run((&mut out, (a, b)));
    }
    out
}

/// `gelu_tanh(a) ⊙ b` (the gated-GeLU MLP's product). Lengths must match. Parallel over chunks
/// for large inputs.
pub fn gelu_tanh_mul(a: &[f32], b: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("gelu_tanh_mul", a.len(), b.len())?;
    Ok(map2(
        a,
        b,
        #[inline(always)]
        |a, b| gelu_tanh(a) * b,
    ))
}

/// For rows of `2 · half` values `[g | u]`: `gelu_tanh(g) ⊙ u`, rows of `half` (a stacked
/// gate-and-up projection's output, Gemma's gated GeLU). Parallel over rows for large inputs.
pub fn gelu_tanh_mul_halves(x: &[f32], half: usize) -> crate::Result<Vec<f32>> {
    mul_halves(
        "gelu_tanh_mul_halves",
        x,
        half,
        #[inline(always)]
        |g, u| gelu_tanh(g) * u,
    )
}

/// For rows `[g | u]`: `silu(g) ⊙ u = g·σ(g) ⊙ u` (SwiGLU: Llama's and YOCO's feed-forward).
pub fn silu_mul_halves(x: &[f32], half: usize) -> crate::Result<Vec<f32>> {
    mul_halves(
        "silu_mul_halves",
        x,
        half,
        #[inline(always)]
        |g, u| g * sigmoid(g) * u,
    )
}

#[inline(always)]
fn mul_halves(
    kernel: &'static str,
    x: &[f32],
    half: usize,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> crate::Result<Vec<f32>> {
    if half == 0 || !x.len().is_multiple_of(2 * half) {
        return Err(crate::KernelError::Invalid {
            kernel,
            arg: "x",
            message: format!("{} elements are not rows of 2 × {half}", x.len()),
        });
    }
    let mut out = vec![0.0f32; x.len() / 2];
    let run = |(o, row): (&mut [f32], &[f32])| {
        simd(
            #[inline(always)]
            || {
                let (g, u) = row.split_at(half);
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = f(g, u);
                }
            },
        )
    };
    if x.len() >= PARALLEL_MIN {
        out.par_chunks_mut(half)
            .zip(x.par_chunks(2 * half))
            .for_each(run);
    } else {
        out.chunks_mut(half).zip(x.chunks(2 * half)).for_each(run);
    }
    Ok(out)
}

/// `act(g) ⊙ u` for a tensor `[.., 2·half]` holding `[g | u]` (a stacked gate-and-up projection):
/// one fused pass for contiguous f32 on the CPU, candle's ops elsewhere. `[.., half]`.
pub fn glu_halves(x: &candle_core::Tensor, act: Glu) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::{Tensor, D};
    let half = x.dim(D::Minus1)? / 2;
    let fused = crate::cpu::with_cpu_f32(x, |v| match act {
        Glu::GeluTanh => gelu_tanh_mul_halves(v, half),
        Glu::Silu => silu_mul_halves(v, half),
    });
    if let Some(out) = fused {
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = half;
        }
        return Tensor::from_vec(out.map_err(candle_core::Error::wrap)?, dims, x.device());
    }
    let (g, u) = (
        x.narrow(D::Minus1, 0, half)?,
        x.narrow(D::Minus1, half, half)?,
    );
    let g = match act {
        // candle's `gelu` is the tanh approximation.
        Glu::GeluTanh => g.gelu()?,
        Glu::Silu => g.silu()?,
    };
    g * u
}

/// The activation of a gated linear unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glu {
    GeluTanh,
    Silu,
}

/// `a + b` for tensors of one shape: one pass for contiguous f32 on the CPU (no wake-up of
/// candle's spinning elementwise pool), candle's add elsewhere.
pub fn add_tensors(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    if a.shape() == b.shape() {
        if let Some(sum) = crate::cpu::with_cpu_f32s(&[a, b], |s| add(s[0], s[1])) {
            let sum = sum.map_err(candle_core::Error::wrap)?;
            return candle_core::Tensor::from_vec(sum, a.shape(), a.device());
        }
    }
    a + b
}

/// `a + b` elementwise (a residual connection); threaded for large inputs.
pub fn add(a: &[f32], b: &[f32]) -> crate::Result<Vec<f32>> {
    check_len("add", a.len(), b.len())?;
    Ok(map2(
        a,
        b,
        #[inline(always)]
        |a, b| a + b,
    ))
}

/// Depthwise causal convolution over time of `x` `[batch, seq_len, channels]`, continuing from
/// `state` `[batch, K−1, channels]` (the K−1 inputs before `x`): with `xs = [state; x]`,
/// `out_t = bias + Σ_k taps[k] ⊙ xs[t + k]` for taps `[K, channels]` (the last tap on the current
/// input). Rows in parallel for large inputs.
pub fn causal_conv1d(
    x: &[f32],
    state: &[f32],
    taps: &[f32],
    bias: &[f32],
    (batch, seq_len, channels): (usize, usize, usize),
) -> crate::Result<Vec<f32>> {
    let k = taps.len() / channels.max(1);
    let bad = |arg: &'static str, len: usize, want: usize| {
        Err(crate::KernelError::Invalid {
            kernel: "causal_conv1d",
            arg,
            message: format!("has {len} elements, expected {want}"),
        })
    };
    if channels == 0 || k == 0 || taps.len() != k * channels {
        return bad("taps", taps.len(), k.max(1) * channels);
    }
    for (arg, len, want) in [
        ("x", x.len(), batch * seq_len * channels),
        ("state", state.len(), batch * (k - 1) * channels),
        ("bias", bias.len(), channels),
    ] {
        if len != want {
            return bad(arg, len, want);
        }
    }
    let mut out = vec![0.0f32; x.len()];
    // Row r of xs = [state; x] for sequence b.
    let xs_row = |b: usize, r: usize| -> &[f32] {
        if r < k - 1 {
            &state[(b * (k - 1) + r) * channels..][..channels]
        } else {
            &x[(b * seq_len + r - (k - 1)) * channels..][..channels]
        }
    };
    // Tasks of whole rows, about CHUNK values each.
    let rows_per_task = (CHUNK / channels).max(1);
    let run = |(task, o): (usize, &mut [f32])| {
        simd(
            #[inline(always)]
            || {
                for (r, o) in o.chunks_mut(channels).enumerate() {
                    let i = task * rows_per_task + r;
                    let (b, t) = (i / seq_len, i % seq_len);
                    o.copy_from_slice(bias);
                    for tap in 0..k {
                        let w = &taps[tap * channels..][..channels];
                        for ((o, &w), &v) in o.iter_mut().zip(w).zip(xs_row(b, t + tap)) {
                            *o = w.mul_add(v, *o);
                        }
                    }
                }
            },
        )
    };
    if x.len() >= PARALLEL_MIN {
        out.par_chunks_mut(rows_per_task * channels)
            .enumerate()
            .for_each(run);
    } else {
        run((0, &mut out));
    }
    Ok(out)
}

/// Rotary embedding, rotate-half layout (HF's `rotate_half`), on the first `rotary_dim` values of
/// each head of `x` `[rows, heads, head_dim]`; the rest pass through. `cos`, `sin` are
/// `[rows, rotary_dim / 2]`: `(x₁, x₂) → (x₁·cos − x₂·sin, x₂·cos + x₁·sin)` for the pairs
/// `(i, i + rotary_dim/2)`, each product rounded as separate tensor ops would round it.
pub fn rope_rotate_half(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    (heads, head_dim, rotary_dim): (usize, usize, usize),
) -> crate::Result<Vec<f32>> {
    let half = rotary_dim / 2;
    let row = heads * head_dim;
    let bad = |message: String| {
        Err(crate::KernelError::Invalid {
            kernel: "rope_rotate_half",
            arg: "shape",
            message,
        })
    };
    if row == 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim || !x.len().is_multiple_of(row) {
        return bad(format!(
            "{} values, heads {heads}, head_dim {head_dim}, rotary_dim {rotary_dim}",
            x.len()
        ));
    }
    let rows = x.len() / row;
    if cos.len() != rows * half || sin.len() != rows * half {
        return bad(format!("cos/sin need {rows} × {half} values"));
    }
    let mut out = x.to_vec();
    for (r, o) in out.chunks_mut(row).enumerate() {
        let (c, s) = (&cos[r * half..][..half], &sin[r * half..][..half]);
        for head in o.chunks_mut(head_dim) {
            let (x1, rest) = head.split_at_mut(half);
            let x2 = &mut rest[..half];
            for i in 0..half {
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * c[i] - b * s[i];
                x2[i] = b * c[i] + a * s[i];
            }
        }
    }
    Ok(out)
}

fn check_len(kernel: &'static str, a: usize, b: usize) -> crate::Result<()> {
    if a != b {
        return Err(crate::KernelError::Invalid {
            kernel,
            arg: "b",
            message: format!("has {b} elements, a has {a}"),
        });
    }
    Ok(())
}

/// `x ← log softmax(scale · x + mask)` over each row of `x` `[batch, rows, n]`, in place, with
/// the additive `mask` `[batch, n]` (0 for a key, −∞ for padding) shared by a batch's rows: per
/// row, one pass that scales and masks, one for the max, one for the sum of `exp`, one that
/// subtracts `max + ln(sum)`, all vectorised and in L1; rows in parallel. Smart Bird's sketch,
/// `log Â` (in place: a fresh N × N buffer a call costs page faults worth more than the math).
pub fn scaled_masked_log_softmax(
    x: &mut [f32],
    mask: &[f32],
    n: usize,
    scale: f32,
) -> crate::Result<()> {
    if n == 0
        || mask.is_empty()
        || !mask.len().is_multiple_of(n)
        || !x.len().is_multiple_of(mask.len())
    {
        return Err(crate::KernelError::Invalid {
            kernel: "scaled_masked_log_softmax",
            arg: "x",
            message: format!(
                "{} elements are not [batch, rows, {n}] over a mask of {} ([batch, {n}])",
                x.len(),
                mask.len()
            ),
        });
    }
    let per_batch = x.len() / (mask.len() / n);
    let row = |(r, out): (usize, &mut [f32])| {
        let mask = &mask[(r * n / per_batch) * n..][..n];
        simd(
            #[inline(always)]
            || {
                // Eight lanes apart, so the loops vectorise (one running max or sum is a chain
                // the compiler may not reorder).
                for (o, &m) in out.iter_mut().zip(mask) {
                    *o = *o * scale + m;
                }
                let mut lanes = [f32::NEG_INFINITY; 8];
                let mut eight = out.chunks_exact(8);
                for c in &mut eight {
                    for (l, &o) in lanes.iter_mut().zip(c) {
                        *l = if o > *l { o } else { *l };
                    }
                }
                let max = eight
                    .remainder()
                    .iter()
                    .chain(&lanes)
                    .fold(f32::NEG_INFINITY, |m, &o| m.max(o));
                let mut sums = [0.0f32; 8];
                let mut eight = out.chunks_exact(8);
                for c in &mut eight {
                    for (s, &o) in sums.iter_mut().zip(c) {
                        *s += exp(o - max);
                    }
                }
                let tail: f32 = eight.remainder().iter().map(|&o| exp(o - max)).sum();
                let lse = max + (sums.iter().sum::<f32>() + tail).ln();
                out.iter_mut().for_each(|o| *o -= lse);
            },
        )
    };
    if x.len() >= PARALLEL_MIN {
        x.par_chunks_mut(n).enumerate().for_each(row);
    } else {
        x.chunks_mut(n).enumerate().for_each(row);
    }
    Ok(())
}

/// RMSNorm of each `scale.len()`-wide row of `x`: `x · (mean(x²) + eps)^-½ ⊙ scale` (for Gemma,
/// `scale` is `1 + w`), rows in parallel.
pub fn rms_norm_rows(x: &[f32], scale: &[f32], eps: f32) -> crate::Result<Vec<f32>> {
    let width = scale.len();
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(crate::KernelError::Invalid {
            kernel: "rms_norm_rows",
            arg: "x",
            message: format!("{} elements are not rows of {width}", x.len()),
        });
    }
    let mut out = vec![0.0f32; x.len()];
    let norm = |(out, row): (&mut [f32], &[f32])| {
        simd(
            #[inline(always)]
            || {
                // Eight partial sums, as the vector loop keeps them, then one reduction.
                let mut acc = [0.0f32; 8];
                let mut chunks = row.chunks_exact(8);
                for c in &mut chunks {
                    for (a, v) in acc.iter_mut().zip(c) {
                        *a = v.mul_add(*v, *a);
                    }
                }
                let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
                let mean_sq = (acc.iter().sum::<f32>() + tail) / width as f32;
                let inv = 1.0 / (mean_sq + eps).sqrt();
                for ((o, v), s) in out.iter_mut().zip(row).zip(scale) {
                    *o = v * inv * s;
                }
            },
        )
    };
    if x.len() >= PARALLEL_MIN {
        out.par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .for_each(norm);
    } else {
        out.chunks_mut(width).zip(x.chunks(width)).for_each(norm);
    }
    Ok(out)
}
