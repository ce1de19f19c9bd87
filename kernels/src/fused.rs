//! Gemma's small fused passes on tensors, for any device: one vectorised pass over f32 CPU
//! tensors ([`crate::cpu_math`]), the same computation as candle tensor ops elsewhere (GPUs,
//! bf16). Model code calls these and keeps no device branch of its own.
use candle_core::{DType, Tensor, D};

use crate::cpu::{with_cpu_f32, with_cpu_f32s};
use crate::cpu_math;

fn wrap(e: crate::KernelError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// Gemma's RMSNorm, `x · rsqrt(mean(x²) + eps) · scale` over the last dimension, in f32 whatever
/// `x`'s dtype (`scale` = `1 + w`, `[width]` f32 on `x`'s device).
pub fn gemma_rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    if let Some(out) = with_cpu_f32s(&[x, scale], |s| {
        cpu_math::rms_norm_rows(s[0], s[1], eps as f32)
    }) {
        return Tensor::from_vec(out.map_err(wrap)?, x.shape(), x.device());
    }
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_mul(&(mean_sq + eps)?.sqrt()?.recip()?)?;
    normed.broadcast_mul(scale)?.to_dtype(dtype)
}

/// The logit soft cap, `cap · tanh(v / cap)`.
pub fn soft_cap(logits: &Tensor, cap: f64) -> candle_core::Result<Tensor> {
    match with_cpu_f32(logits, |v| cpu_math::soft_cap(v, cap as f32)) {
        Some(v) => Tensor::from_vec(v, logits.shape(), logits.device()),
        None => (logits / cap)?.tanh()? * cap,
    }
}

/// RoPE on the first `rotary_dim` dimensions of each head of `x` `[B, T, heads, head_dim]`
/// (rotate-half layout), with `cos`, `sin` `[B, T, 1, rotary_dim / 2]` (f32).
pub fn rope_rotate_half(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    rotary_dim: usize,
) -> candle_core::Result<Tensor> {
    let (_, _, heads, head_dim) = x.dims4()?;
    let x = x.contiguous()?;
    if let Some(out) = with_cpu_f32s(&[&x, cos, sin], |s| {
        cpu_math::rope_rotate_half(s[0], s[1], s[2], (heads, head_dim, rotary_dim))
    }) {
        return Tensor::from_vec(out.map_err(wrap)?, x.shape(), x.device());
    }
    let half = rotary_dim / 2;
    let dtype = x.dtype();
    let x1 = x.narrow(D::Minus1, 0, half)?.to_dtype(DType::F32)?;
    let x2 = x.narrow(D::Minus1, half, half)?.to_dtype(DType::F32)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    let mut parts = vec![r1.to_dtype(dtype)?, r2.to_dtype(dtype)?];
    if rotary_dim < head_dim {
        parts.push(x.narrow(D::Minus1, rotary_dim, head_dim - rotary_dim)?);
    }
    Tensor::cat(&parts, D::Minus1)
}

/// The causal depthwise convolution `out_t = bias + Σ_k taps[k] ⊙ x_{t−(K−1−k)}` of `x`
/// `[B, T, W]` continuing from `state` (the K − 1 inputs before it, `[B, K−1, W]`); `taps`
/// `[K, W]`, `bias` `[W]`, all one dtype.
pub fn causal_conv1d(
    x: &Tensor,
    state: &Tensor,
    taps: &Tensor,
    bias: &Tensor,
) -> candle_core::Result<Tensor> {
    let (b, t, channels) = x.dims3()?;
    let k = taps.dim(0)?;
    let x = x.contiguous()?;
    if let Some(out) = with_cpu_f32s(&[&x, state, taps, bias], |s| {
        cpu_math::causal_conv1d(s[0], s[1], s[2], s[3], (b, t, channels))
    }) {
        return Tensor::from_vec(out.map_err(wrap)?, x.shape(), x.device());
    }
    let xs = Tensor::cat(&[state, &x], 1)?;
    let mut out = bias.broadcast_as(x.shape())?.contiguous()?;
    for tap in 0..k {
        out = (out + xs.narrow(1, tap, t)?.broadcast_mul(&taps.get(tap)?)?)?;
    }
    Ok(out)
}
