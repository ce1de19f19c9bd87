//! The Real-Gated Linear Recurrent Unit (Griffin §2.4; SPEC §2.3; HF `RecurrentGemmaRglru`):
//!
//! ```text
//! i_t = σ(BlockDiag_x(x_t)),  r_t = σ(BlockDiag_a(x_t))          (block = lru_width / heads)
//! log a_t = −8 · r_t · softplus(Λ)                              (Λ: `recurrent_param`)
//! h_t = a_t ⊙ h_{t−1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)            (a = 0, multiplier 1 at position 0)
//! ```
//!
//! The recurrence itself runs on the `kernels` linear scan, parallel over time; the state is f32.
use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::step::Step;

#[derive(Debug, Clone)]
pub struct RgLru {
    heads: usize,
    block: usize,
    /// softplus(recurrent_param) `[W]`, f32, computed once at load.
    softplus_param: Tensor,
    input_gate_weight: Tensor,
    input_gate_bias: Tensor,
    recurrent_gate_weight: Tensor,
    recurrent_gate_bias: Tensor,
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
        Ok(RgLru {
            heads,
            block,
            softplus_param: softplus(&param)?,
            input_gate_weight: vb.get((heads, block, block), "input_gate_weight")?,
            input_gate_bias: vb.get((heads, block), "input_gate_bias")?,
            recurrent_gate_weight: vb.get((heads, block, block), "recurrent_gate_weight")?,
            recurrent_gate_bias: vb.get((heads, block), "recurrent_gate_bias")?,
        })
    }

    /// `x_blk @ W[h] + b[h]` per head: the weight is `[in, out]` per block (not nn.Linear's).
    fn block_diag(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        let (bsz, t, width) = x.dims3()?;
        let xb = x
            .reshape((bsz * t, self.heads, self.block))?
            .transpose(0, 1)?
            .contiguous()?;
        let y = xb.matmul(w)?.broadcast_add(&b.unsqueeze(1)?)?;
        y.transpose(0, 1)?.reshape((bsz, t, width))
    }

    /// `x` `[B, T, W]`, state `h0` `[B, W]` f32: returns all `h` (dtype of x) and the new state.
    pub fn forward(
        &self,
        x: &Tensor,
        h0: &Tensor,
        step: &Step,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let dtype = x.dtype();
        let input_gate = candle_nn::ops::sigmoid(&self.block_diag(
            x,
            &self.input_gate_weight,
            &self.input_gate_bias,
        )?)?;
        let rec_gate = candle_nn::ops::sigmoid(&self.block_diag(
            x,
            &self.recurrent_gate_weight,
            &self.recurrent_gate_bias,
        )?)?;
        let log_a = (rec_gate
            .to_dtype(DType::F32)?
            .broadcast_mul(&self.softplus_param)?
            * -8.0)?;
        let a = log_a.exp()?;
        let a_sq = (log_a * 2.0)?.exp()?;
        // sqrt(1 − a²), except 1 at a sequence start, where the state resets (the scan's reset).
        let multiplier = (a_sq.neg()? + 1.0)?.sqrt()?;
        let reset = step
            .reset()
            .unsqueeze(D::Minus1)?
            .broadcast_as(multiplier.shape())?;
        let multiplier = reset.where_cond(&multiplier.ones_like()?, &multiplier)?;
        let mut xn = (x * input_gate)?.mul(&multiplier.to_dtype(dtype)?)?;
        let mut a = a.to_dtype(dtype)?;
        if !step.all_real() {
            // Padding is the identity map: the state passes through it unchanged.
            let real = step.real_mask(dtype)?;
            xn = xn.broadcast_mul(&real)?;
            a = (a.broadcast_mul(&real)?
                + real.neg()?.affine(1.0, 1.0)?.broadcast_as(a.shape())?)?;
        }
        kernels::linear_scan::linear_scan(&a, &xn, Some(h0), Some(step.reset()))
    }
}
