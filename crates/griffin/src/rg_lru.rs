//! The Real-Gated Linear Recurrent Unit (Griffin §2.4; docs/griffin.md §3; HF
//! `RecurrentGemmaRglru`):
//!
//! ```text
//! i_t = σ(BlockDiag_x(x_t)),  r_t = σ(BlockDiag_a(x_t))          (block = lru_width / heads)
//! log a_t = −8 · r_t · softplus(Λ)                              (Λ: `recurrent_param`)
//! h_t = a_t ⊙ h_{t−1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)            (a = 0, multiplier 1 at position 0)
//! ```
//!
//! The gates' block-diagonal products are the `kernels::rg_lru::block_diagonal_gates` op;
//! everything after them, to the output times the recurrent block's GeLU branch, is the
//! `kernels::rg_lru` op (one fused pass in f32 on the CPU; tensor ops around the linear-scan
//! kernel elsewhere). The state is f32 either way.
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::step::Step;

#[derive(Debug, Clone)]
pub struct RgLru {
    input_gate_weight: Tensor,
    recurrent_gate_weight: Tensor,
    /// softplus(Λ) and the two gate biases, flattened to `[W]` in f32, computed once at load.
    softplus_a: Tensor,
    gate_x_bias: Tensor,
    gate_a_bias: Tensor,
}

/// `log(1 + e^x)`, as torch's softplus (linear above 20).
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let soft = (x.exp()? + 1.0)?.log()?;
    x.gt(20.0)?.where_cond(x, &soft)
}

impl RgLru {
    pub fn new(width: usize, heads: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let block = width / heads;
        let param = vb.get(width, "recurrent_param")?.to_dtype(DType::F32)?;
        let flat = |t: Tensor| t.flatten_all()?.to_dtype(DType::F32);
        Ok(RgLru {
            softplus_a: softplus(&param)?,
            gate_x_bias: flat(vb.get((heads, block), "input_gate_bias")?)?,
            gate_a_bias: flat(vb.get((heads, block), "recurrent_gate_bias")?)?,
            input_gate_weight: vb.get((heads, block, block), "input_gate_weight")?,
            recurrent_gate_weight: vb.get((heads, block, block), "recurrent_gate_weight")?,
        })
    }

    /// `x` `[B, T, W]`, the GeLU branch's pre-activation `branch` `[B, T, W]`, state `h0` `[B, W]`
    /// f32: returns `h ⊙ gelu_tanh(branch)` for every step (dtype of x) and the new state.
    pub fn forward(
        &self,
        x: &Tensor,
        branch: &Tensor,
        h0: &Tensor,
        step: &Step,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (gate_x, gate_a) = kernels::rg_lru::block_diagonal_gates(
            x,
            &self.input_gate_weight,
            &self.recurrent_gate_weight,
        )?;
        kernels::rg_lru::rg_lru(
            x,
            &gate_x,
            &gate_a,
            Some(branch),
            &kernels::rg_lru::RgLruParams {
                gate_x_bias: &self.gate_x_bias,
                gate_a_bias: &self.gate_a_bias,
                softplus_a: &self.softplus_a,
            },
            h0,
            &kernels::rg_lru::RgLruSteps {
                reset: step.reset(),
                real: step.real(),
            },
        )
    }
}
