//! The recurrent block's causal depthwise temporal convolution (docs/griffin.md §2):
//! `out_t = b + Σ_{s=0..K-1} w[K-1-s] ⊙ x_{t-s}`, the last tap on the current token.
//!
//! The whole sequence is convolved at once (K shifted multiply-adds over `[B, T, W]`), continuing
//! from the state: the last K-1 inputs of the sequence so far (zeros at its start), by
//! `kernels::fused::causal_conv1d` (one pass over f32 on the CPU).
use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use crate::step::Step;

#[derive(Debug, Clone)]
pub struct Conv1d {
    /// `[K, W]`: tap k multiplies `x_{t-(K-1-k)}`.
    taps: Tensor,
    bias: Tensor,
    width: usize,
}

impl Conv1d {
    /// HF stores the weight as `nn.Conv1d(groups = W)`: `[W, 1, K]`.
    pub fn new(channels: usize, width: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get((channels, 1, width), "weight")?;
        let taps = w.squeeze(1)?.t()?.contiguous()?;
        let bias = vb.get(channels, "bias")?;
        Ok(Conv1d { taps, bias, width })
    }

    /// Width of the state: the last K-1 inputs.
    pub fn state_len(&self) -> usize {
        self.width - 1
    }

    /// `x` `[B, T, W]` (zero at padding), `state` `[B, K-1, W]`: returns the output and the new
    /// state, the last K-1 inputs of each sequence that are not padding.
    pub fn forward(
        &self,
        x: &Tensor,
        state: &Tensor,
        step: &Step,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let t = x.dim(1)?;
        let k = self.width;
        let out = kernels::fused::causal_conv1d(x, state, &self.taps, &self.bias)?;
        let new_state = if step.all_real() {
            // The last K-1 rows of [state, x]: from x alone when it has that many (a prompt;
            // joining the whole prompt to the state would copy all of it for K-1 rows).
            if t >= k - 1 {
                x.narrow(1, t - (k - 1), k - 1)?
            } else {
                Tensor::cat(&[state, x], 1)?.narrow(1, t, k - 1)?
            }
        } else {
            let xs = Tensor::cat(&[state, x], 1)?;
            // Per sequence, the last K-1 rows of [state, x] that are not padding.
            let rows = t + k - 1;
            let mut idx = Vec::with_capacity(step.batch * (k - 1));
            for b in 0..step.batch {
                let real: Vec<u32> = (0..rows)
                    .filter(|&r| r < k - 1 || step.is_real(b, r - (k - 1)))
                    .map(|r| (b * rows + r) as u32)
                    .collect();
                idx.extend_from_slice(&real[real.len() - (k - 1)..]);
            }
            let idx = Tensor::from_vec(idx, step.batch * (k - 1), x.device())?;
            let flat = xs.flatten_to(1)?;
            flat.index_select(&idx, 0)?
                .reshape((step.batch, k - 1, xs.dim(D::Minus1)?))?
        };
        Ok((out, new_state.contiguous()?))
    }
}
