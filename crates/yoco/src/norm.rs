//! RMSNorm as the reference (`rms_norm.py`): `x · rsqrt(mean(x²) + eps)` in f32, times the weight
//! when it has one.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Result, YocoError};

/// The weighted RMSNorm over the model dimension (candle-nn's, which computes in f32).
pub fn rms_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<candle_nn::RmsNorm> {
    candle_nn::rms_norm(dim, eps, vb).map_err(|e| YocoError::Weights(e.to_string()))
}

pub fn apply(norm: &candle_nn::RmsNorm, x: &Tensor) -> Result<Tensor> {
    Ok(norm.forward(x)?)
}

/// RMSNorm without weight over the last dimension of `x` (gated retention's `subln`, per head),
/// in f32.
pub fn rms_norm_heads(x: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dims().last().copied().unwrap_or(1);
    let ones = Tensor::ones(d, candle_core::DType::F32, x.device())?;
    let dtype = x.dtype();
    Ok(
        candle_nn::ops::rms_norm(&x.to_dtype(candle_core::DType::F32)?, &ones, eps as f32)?
            .to_dtype(dtype)?,
    )
}
