//! RMSNorm as Gemma computes it: `x * rsqrt(mean(x²) + eps) * (1 + w)`, in f32 whatever the
//! activation dtype (SPEC §2.1; HF `RecurrentGemmaRMSNorm`).
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `1 + w`, precomputed in f32.
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        Ok(RmsNorm {
            scale: (w + 1.0)?,
            eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_mul(&(mean_sq + self.eps)?.sqrt()?.recip()?)?;
        normed.broadcast_mul(&self.scale)?.to_dtype(dtype)
    }
}
