//! The gated-GeLU MLP (SPEC §2.1): `down(gelu_tanh(gate(x)) * up(x))`, biases everywhere. The gate
//! and up projections read the same input, so they are stacked into one product at load.
use candle_core::{Module, Tensor, D};
use candle_nn::{linear, VarBuilder};
use kernels::cpu_linear::Linear;

#[derive(Debug, Clone)]
pub struct Mlp {
    /// `[gate; up]`: output rows `0..width` are `gate_proj`'s, `width..2·width` are `up_proj`'s.
    gate_up_proj: Linear,
    down_proj: Linear,
    width: usize,
}

impl Mlp {
    pub fn new(hidden: usize, width: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp {
            gate_up_proj: Linear::stacked(&[
                linear(hidden, width, vb.pp("gate_proj"))?,
                linear(hidden, width, vb.pp("up_proj"))?,
            ])?,
            down_proj: linear(width, hidden, vb.pp("down_proj"))?.into(),
            width,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gate_up = self.gate_up_proj.forward(x)?;
        // f32 on the CPU: one vectorised pass; elsewhere candle's `gelu`, which is the tanh
        // approximation (`gelu_pytorch_tanh`).
        let fused = kernels::cpu::with_cpu_f32(&gate_up, |v| {
            kernels::cpu_math::gelu_tanh_mul_halves(v, self.width)
        });
        let product = match fused {
            Some(p) => {
                let mut dims = gate_up.dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = self.width;
                }
                Tensor::from_vec(p.map_err(candle_core::Error::wrap)?, dims, gate_up.device())?
            }
            None => {
                let gate = gate_up.narrow(D::Minus1, 0, self.width)?;
                let up = gate_up.narrow(D::Minus1, self.width, self.width)?;
                (gate.gelu()? * up)?
            }
        };
        self.down_proj.forward(&product)
    }
}
