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

/// `log softmax(scale · x + mask)` over the last dimension of `x` `[batch, rows, n]`, with the
/// additive `mask` `[batch, n]` (0 for keys, −∞ for padding) broadcast over the rows: Smart
/// Bird's sketch log-probabilities. On the CPU in f32 this overwrites `x`'s storage (pass a
/// tensor nothing else reads, such as a fresh matmul's output) in one vectorised pass per row
/// ([`cpu_math::scaled_masked_log_softmax`]); elsewhere it is candle ops, `x` untouched.
pub fn scaled_masked_log_softmax_in_place(
    x: Tensor,
    scale: f64,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let (batch, _, n) = x.dims3()?;
    if mask.dims() != [batch, n] {
        return Err(candle_core::Error::Msg(format!(
            "scaled_masked_log_softmax: mask {:?} is not [batch {batch}, n {n}] of x {:?}",
            mask.dims(),
            x.dims()
        )));
    }
    let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous();
    if let (true, Some(mask)) = (cpu_f32, with_cpu_f32(mask, <[f32]>::to_vec)) {
        x.inplace_op1(&LogSoftmaxInPlace {
            mask,
            n,
            scale: scale as f32,
        })?;
        return Ok(x);
    }
    let scores = (x * scale)?.broadcast_add(&mask.unsqueeze(1)?)?;
    candle_nn::ops::log_softmax(&scores, D::Minus1)
}

struct LogSoftmaxInPlace {
    mask: Vec<f32>,
    n: usize,
    scale: f32,
}

impl candle_core::InplaceOp1 for LogSoftmaxInPlace {
    fn name(&self) -> &'static str {
        "scaled-masked-log-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (candle_core::CpuStorage::F32(data), Some((start, end))) =
            (storage, layout.contiguous_offsets())
        else {
            return Err(candle_core::Error::Msg(
                "scaled_masked_log_softmax: x must be contiguous f32".into(),
            ));
        };
        cpu_math::scaled_masked_log_softmax(&mut data[start..end], &self.mask, self.n, self.scale)
            .map_err(wrap)
    }
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
