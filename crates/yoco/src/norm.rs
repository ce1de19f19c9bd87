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

/// RMSNorm without weight over each `head_dim` slice of `x`, in place (gated retention's `subln`).
pub fn rms_norm_heads(x: &mut [f32], head_dim: usize, eps: f64) {
    for head in x.chunks_exact_mut(head_dim) {
        let mean_sq = head.iter().map(|v| v * v).sum::<f32>() / head_dim as f32;
        let scale = 1.0 / (mean_sq + eps as f32).sqrt();
        head.iter_mut().for_each(|v| *v *= scale);
    }
}
