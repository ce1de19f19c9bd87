//! The sketch (Smart Bird §3, step 1): a single-head, low-dimensional attention layer whose only
//! output is its attention matrix, `Â = softmax(Q̂ K̂ᵀ / sqrt(d))` with `Q̂ = W_q x̂`, `K̂ = W_k x̂`,
//! `x̂ = W_s x` (`hidden → d`). Padding keys are masked out. Cost O(N²·d).
//!
//! Reconstructed choices (the paper's code is not public): the down-projection `W_s` before the
//! sketch's own query/key projections, biases on all three, one sketch per layer computed from the
//! layer's input, and returning `log Â` (what the sampler needs).
use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::config::Config;
use crate::error::{Result, SmartBirdError};

#[derive(Debug, Clone)]
pub struct Sketch {
    down: Linear,
    query: Linear,
    key: Linear,
    dim: usize,
}

impl Sketch {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.sketch_dim);
        let w = |e: candle_core::Error| SmartBirdError::Weights(e.to_string());
        Ok(Sketch {
            down: linear(h, d, vb.pp("down")).map_err(w)?,
            query: linear(d, d, vb.pp("query")).map_err(w)?,
            key: linear(d, d, vb.pp("key")).map_err(w)?,
            dim: d,
        })
    }

    /// `log Â [batch, N, N]` for `x [batch, N, hidden]` and the additive key mask `[batch, N]`
    /// (0 for tokens, −∞ for padding).
    pub fn log_probs(&self, x: &Tensor, key_mask: &Tensor) -> Result<Tensor> {
        let small = self.down.forward(x)?;
        let q = self.query.forward(&small)?;
        let k = self.key.forward(&small)?;
        let scores = q.matmul(&k.t()?)?;
        let scale = (self.dim as f64).sqrt().recip();
        // In place: `scores` is this call's own.
        Ok(kernels::fused::scaled_masked_log_softmax_in_place(
            scores, scale, key_mask,
        )?)
    }
}
