//! The gated-GeLU MLP (SPEC §2.1): `down(gelu_tanh(gate(x)) * up(x))`, biases everywhere.
use candle_core::{Module, Tensor};
use candle_nn::{linear, VarBuilder};
use kernels::cpu_linear::Linear;

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, width: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp {
            gate_proj: linear(hidden, width, vb.pp("gate_proj"))?.into(),
            up_proj: linear(hidden, width, vb.pp("up_proj"))?.into(),
            down_proj: linear(width, hidden, vb.pp("down_proj"))?.into(),
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        // f32 on the CPU: one vectorised pass; elsewhere candle's `gelu`, which is the tanh
        // approximation (`gelu_pytorch_tanh`).
        let fused = kernels::cpu::with_cpu_f32(&gate, |g| {
            kernels::cpu::with_cpu_f32(&up, |u| kernels::cpu_math::gelu_tanh_mul(g, u))
        });
        let product = match fused.flatten() {
            Some(p) => Tensor::from_vec(
                p.map_err(candle_core::Error::wrap)?,
                gate.shape(),
                gate.device(),
            )?,
            None => (gate.gelu()? * up)?,
        };
        self.down_proj.forward(&product)
    }
}
