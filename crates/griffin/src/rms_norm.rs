//! RMSNorm as Gemma computes it: `x * rsqrt(mean(x²) + eps) * (1 + w)`, in f32 whatever the
//! activation dtype (docs/griffin.md §1; HF `RecurrentGemmaRMSNorm`), by
//! `kernels::fused::gemma_rms_norm` (one pass over f32 on the CPU instead of seven tensor ops).
use candle_core::{DType, Module, Tensor};
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
        let scale = (w + 1.0)?;
        Ok(RmsNorm { scale, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        kernels::fused::gemma_rms_norm(x, &self.scale, self.eps)
    }
}
