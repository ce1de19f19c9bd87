//! The gated-GeLU MLP (docs/griffin.md §1): `down(gelu_tanh(gate(x)) * up(x))`, biases everywhere.
//! The gate and up projections read the same input, so they are stacked into one product at load.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::cpu_math::Glu;
use layers::Linear;

#[derive(Debug, Clone)]
pub struct Mlp {
    /// `[gate; up]`: output rows `0..width` are `gate_proj`'s, `width..2·width` are `up_proj`'s.
    gate_up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, width: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp {
            gate_up_proj: Linear::load_stacked(
                hidden,
                &[("gate_proj", width), ("up_proj", width)],
                true,
                &vb,
            )?,
            down_proj: Linear::load(width, hidden, true, &vb.pp("down_proj"))?,
        })
    }
}

impl Mlp {
    /// `mlp(x) + residual`: the GeLU gate taken and the residual added inside the products where
    /// `layers::Linear` can (a prompt on an AVX-512 CPU), by separate passes elsewhere.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.down_proj
            .forward_add(&self.gate_up_proj.forward_glu(x, Glu::GeluTanh)?, residual)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.down_proj
            .forward(&self.gate_up_proj.forward_glu(x, Glu::GeluTanh)?)
    }
}
