//! The Real-Gated Linear Recurrent Unit (Griffin §2.4; docs/griffin.md §3; HF
//! `RecurrentGemmaRglru`):
//!
//! ```text
//! i_t = σ(BlockDiag_x(x_t)),  r_t = σ(BlockDiag_a(x_t))          (block = lru_width / heads)
//! log a_t = −8 · r_t · softplus(Λ)                              (Λ: `recurrent_param`)
//! h_t = a_t ⊙ h_{t−1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)            (a = 0, multiplier 1 at position 0)
//! ```
//!
//! In f32 on the CPU the whole of it, from the gates' pre-activations to the output times the
//! recurrent block's GeLU branch, is one fused pass (`kernels::rg_lru`). Elsewhere (bf16, a GPU)
//! the gates are tensor ops and the recurrence runs on the `kernels` linear scan, parallel over
//! time. The state is f32 either way.
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
    /// softplus(Λ) and the two gate biases, flattened to `[W]` in f32, for the fused CPU pass.
    host: HostParams,
}

#[derive(Debug, Clone)]
struct HostParams {
    softplus_a: Vec<f32>,
    gate_x_bias: Vec<f32>,
    gate_a_bias: Vec<f32>,
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
        let softplus_param = softplus(&param)?;
        let input_gate_bias = vb.get((heads, block), "input_gate_bias")?;
        let recurrent_gate_bias = vb.get((heads, block), "recurrent_gate_bias")?;
        let flat = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok(RgLru {
            heads,
            block,
            host: HostParams {
                softplus_a: flat(&softplus_param)?,
                gate_x_bias: flat(&input_gate_bias)?,
                gate_a_bias: flat(&recurrent_gate_bias)?,
            },
            softplus_param,
            input_gate_weight: vb.get((heads, block, block), "input_gate_weight")?,
            input_gate_bias,
            recurrent_gate_weight: vb.get((heads, block, block), "recurrent_gate_weight")?,
            recurrent_gate_bias,
        })
    }

    /// `x_blk @ W[h] (+ b[h])` per head: the weight is `[in, out]` per block (not nn.Linear's).
    fn block_diag(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (bsz, t, width) = x.dims3()?;
        let xb = x
            .reshape((bsz * t, self.heads, self.block))?
            .transpose(0, 1)?
            .contiguous()?;
        let mut y = xb.matmul(w)?;
        if let Some(b) = b {
            y = y.broadcast_add(&b.unsqueeze(1)?)?;
        }
        y.transpose(0, 1)?.reshape((bsz, t, width))
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
        if x.dtype() == DType::F32 && branch.dtype() == DType::F32 && x.device().is_cpu() {
            return self.forward_fused(x, branch, h0, step);
        }
        let (h, h_last) = self.forward_tensors(x, h0, step)?;
        // candle's `gelu` is the tanh approximation (`gelu_pytorch_tanh`).
        Ok(((h * branch.gelu()?)?, h_last))
    }

    /// The f32 CPU path: the gates' block-diagonal products (matmuls), then one fused pass.
    fn forward_fused(
        &self,
        x: &Tensor,
        branch: &Tensor,
        h0: &Tensor,
        step: &Step,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (bsz, t, width) = x.dims3()?;
        let gate_x = self.block_diag(x, &self.input_gate_weight, None)?;
        let gate_a = self.block_diag(x, &self.recurrent_gate_weight, None)?;
        let (x, branch) = (x.contiguous()?, branch.contiguous()?);
        let h0: Vec<f32> = h0.flatten_all()?.to_vec1()?;
        let reset: Vec<bool> = step.pos.iter().map(|&p| p == 0).collect();
        let real: Option<Vec<bool>> =
            (!step.all_real()).then(|| step.pos.iter().map(|&p| p >= 0).collect());
        let out = kernels::cpu::with_cpu_f32s(&[&x, &gate_x, &gate_a, &branch], |s| {
            kernels::rg_lru::rg_lru_cpu(&kernels::rg_lru::RgLruInput {
                batch: bsz,
                seq_len: t,
                width,
                x: s[0],
                gate_x: s[1],
                gate_a: s[2],
                gate_x_bias: &self.host.gate_x_bias,
                gate_a_bias: &self.host.gate_a_bias,
                softplus_a: &self.host.softplus_a,
                h0: Some(&h0),
                reset: &reset,
                real: real.as_deref(),
                branch: Some(s[3]),
            })
        })
        .ok_or_else(|| {
            candle_core::Error::Msg("rg_lru: expected contiguous f32 on the CPU".into())
        })?
        .map_err(candle_core::Error::wrap)?;
        Ok((
            Tensor::from_vec(out.y, (bsz, t, width), x.device())?,
            Tensor::from_vec(out.h_last, (bsz, width), x.device())?,
        ))
    }

    /// Tensor ops and the linear scan: all `h` (dtype of x) and the new state.
    fn forward_tensors(
        &self,
        x: &Tensor,
        h0: &Tensor,
        step: &Step,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let dtype = x.dtype();
        let input_gate = candle_nn::ops::sigmoid(&self.block_diag(
            x,
            &self.input_gate_weight,
            Some(&self.input_gate_bias),
        )?)?;
        let rec_gate = candle_nn::ops::sigmoid(&self.block_diag(
            x,
            &self.recurrent_gate_weight,
            Some(&self.recurrent_gate_bias),
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
