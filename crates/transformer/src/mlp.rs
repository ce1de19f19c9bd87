//! The SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))`, no biases (Llama). Gate and up read
//! the same input: stacked into one product at load.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::cpu_math::{glu_halves, Glu};
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
        let raw = |name: &str| {
            candle_nn::linear_no_bias(hidden, inner, vb.pp(name))
                .map_err(|e| TransformerError::Weights(e.to_string()))
        };
        Ok(Mlp {
            gate_up_proj: Linear::stacked(&[raw("gate_proj")?, raw("up_proj")?])?,
            down_proj: linear(inner, hidden, vb.pp("down_proj"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = glu_halves(&self.gate_up_proj.forward(x)?, Glu::Silu)?;
        Ok(self.down_proj.forward(&h)?)
    }
}
