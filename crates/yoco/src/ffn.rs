//! The feed-forward network (`feedforward_network.py`): SwiGLU without biases,
//! `fc2(silu(fc1 x) ⊙ gate x)`.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use layers::Linear;

use crate::error::{Result, YocoError};

#[derive(Debug, Clone)]
pub struct FeedForward {
    /// `[fc1; gate]` stacked (both read x): one product, then `silu(first half) ⊙ second half`.
    fc1_gate: Linear,
    fc2: Linear,
}

pub(crate) fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    // Decode steps take the threaded GEMV (kernels::cpu_linear).
    // The weight as shipped (bf16 stays bf16: layers::linear::get_as_shipped).
    Linear::load(i, o, false, &vb).map_err(|e| YocoError::Weights(e.to_string()))
}

impl FeedForward {
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            fc1_gate: Linear::load_stacked(dim, &[("fc1", hidden), ("gate", hidden)], false, &vb)
                .map_err(|e| YocoError::Weights(e.to_string()))?,
            fc2: linear(hidden, dim, vb.pp("fc2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1_gate.forward_glu(x, kernels::cpu_math::Glu::Silu)?;
        Ok(self.fc2.forward(&h)?)
    }

    /// `forward(x) + residual`, the residual added by `fc2` as it stores its output (for a prompt
    /// on an AVX-512 CPU; a second pass otherwise).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let h = self.fc1_gate.forward_glu(x, kernels::cpu_math::Glu::Silu)?;
        Ok(self.fc2.forward_add(&h, residual)?)
    }
}
