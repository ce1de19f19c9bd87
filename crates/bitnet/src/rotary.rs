//! Rotary position embedding as HF's Llama (which BitNet inherits): `inv_freq_i = 1 / θ^(2i/d)`
//! in f32, applied in rotate-half layout (the first and second halves of a head are the pairs).
use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// cos/sin tables for positions `start..start + len`, `[len, head_dim / 2]`, in `dtype`.
pub fn rope_tables(
    head_dim: usize,
    theta: f64,
    start: usize,
    len: usize,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    // As torch: (arange(0, d, 2).float() / d), then base ** that, reciprocal, all in f32.
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in start..start + len {
        for &f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (len, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (len, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// Rotates `x [batch, len, heads, head_dim]` (rotate-half layout), the projections' own layout.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope_thd(&x.contiguous()?, cos, sin)?)
}
