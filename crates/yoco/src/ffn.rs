//! The feed-forward network (`feedforward_network.py`): SwiGLU without biases,
//! `fc2(silu(fc1 x) ⊙ gate x)`.
use candle_core::{Module, Tensor};
use candle_nn::{linear_no_bias, VarBuilder};
use kernels::cpu_linear::Linear;

use crate::error::{Result, YocoError};

#[derive(Debug, Clone)]
pub struct FeedForward {
    fc1: Linear,
    gate: Linear,
    fc2: Linear,
}

pub(crate) fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    // Decode steps take the threaded GEMV (kernels::cpu_linear).
    Ok(linear_no_bias(i, o, vb)
        .map_err(|e| YocoError::Weights(e.to_string()))?
        .into())
}

impl FeedForward {
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(FeedForward {
            fc1: linear(dim, hidden, vb.pp("fc1"))?,
            gate: linear(dim, hidden, vb.pp("gate"))?,
            fc2: linear(hidden, dim, vb.pp("fc2"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = (self.fc1.forward(x)?.silu()? * self.gate.forward(x)?)?;
        Ok(self.fc2.forward(&h)?)
    }
}
