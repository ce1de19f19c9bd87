//! The SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))`, no biases (Llama).
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::cpu_linear::Linear;

use crate::attention::linear;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, inner: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            gate_proj: linear(hidden, inner, vb.pp("gate_proj"))?,
            up_proj: linear(hidden, inner, vb.pp("up_proj"))?,
            down_proj: linear(inner, hidden, vb.pp("down_proj"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        Ok(self
            .down_proj
            .forward(&(gate * self.up_proj.forward(x)?)?)?)
    }
}
