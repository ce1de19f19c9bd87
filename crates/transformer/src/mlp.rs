//! The SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))`, no biases (Llama). Gate and up read
//! the same input: stacked into one product at load.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::cpu_math::Glu;
use layers::Linear;

use crate::attention::linear;
use crate::error::{Result, TransformerError};

#[derive(Debug, Clone)]
pub struct Mlp {
    /// `[gate_proj; up_proj]`.
    gate_up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, inner: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            gate_up_proj: Linear::load_stacked(
                hidden,
                &[("gate_proj", inner), ("up_proj", inner)],
                false,
                &vb,
            )
            .map_err(|e| TransformerError::Weights(e.to_string()))?,
            down_proj: linear(inner, hidden, vb.pp("down_proj"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.gate_up_proj.forward_glu(x, Glu::Silu)?;
        Ok(self.down_proj.forward(&h)?)
    }

    /// `forward(x) + residual`, the residual added by `down_proj` as it stores its output (for a
    /// prompt on an AVX-512 CPU; a second pass otherwise).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let h = self.gate_up_proj.forward_glu(x, Glu::Silu)?;
        Ok(self.down_proj.forward_add(&h, residual)?)
    }
}
