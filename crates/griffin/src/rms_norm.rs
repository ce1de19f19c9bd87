//! RMSNorm as Gemma computes it: `x * rsqrt(mean(x²) + eps) * (1 + w)`, in f32 whatever the
//! activation dtype (docs/griffin.md §1; HF `RecurrentGemmaRMSNorm`). f32 on the CPU takes one
//! fused pass (`kernels::cpu_math::rms_norm_rows`) instead of seven tensor ops.
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `1 + w`, precomputed in f32.
    scale: Tensor,
    /// The same, on the host, for the fused CPU pass.
    scale_host: Vec<f32>,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        let scale = (w + 1.0)?;
        Ok(RmsNorm {
            scale_host: scale.to_vec1()?,
            scale,
            eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let fused = kernels::cpu::with_cpu_f32(x, |data| {
            kernels::cpu_math::rms_norm_rows(data, &self.scale_host, self.eps as f32)
        });
        if let Some(out) = fused {
            let out = out.map_err(candle_core::Error::wrap)?;
            return Tensor::from_vec(out, x.shape(), x.device());
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_mul(&(mean_sq + self.eps)?.sqrt()?.recip()?)?;
        normed.broadcast_mul(&self.scale)?.to_dtype(dtype)
    }
}
