//! The gated-retention mixer (gRetNet; docs/yoco.md §2, `gate_retention.py`):
//!
//! ```text
//! q, k = RoPE(W_q x), RoPE(W_k x) · d^-0.5;  v = W_v x;  g = W_g x
//! log γ_t = logsigmoid(W_γ x_t) / 16                     (one decay per head and token)
//! S_t = γ_t S_{t−1} + k_tᵀ v_t,  o_t = q_t S_t            (kernels::gated_retention)
//! y = W_out(silu(g) ⊙ concat_h RMSNorm(o_h))             (RMSNorm without weight, eps norm_eps)
//! ```
//!
//! Prefill runs the chunkwise kernel over the whole input; a decode step is the same call with one
//! token. The state `[batch, heads, d, d]` is f32 and its size never changes.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use layers::Linear;

use crate::config::Config;
use crate::error::Result;
use crate::ffn::linear;
use crate::{norm, rotary};

/// τ: `gate_logit_normalizer`.
const GATE_LOGIT_NORMALIZER: f32 = 16.0;

#[derive(Debug, Clone)]
pub struct GatedRetention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    g_proj: Linear,
    gt_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    eps: f64,
    freqs: Vec<f32>,
}

impl GatedRetention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(GatedRetention {
            q_proj: linear(d, d, vb.pp("q_proj"))?,
            k_proj: linear(d, d, vb.pp("k_proj"))?,
            v_proj: linear(d, d, vb.pp("v_proj"))?,
            g_proj: linear(d, d, vb.pp("g_proj"))?,
            gt_proj: linear(d, cfg.n_self_heads, vb.pp("gt_proj"))?,
            out_proj: linear(d, d, vb.pp("out_proj"))?,
            heads: cfg.n_self_heads,
            head_dim: cfg.self_head_dim(),
            eps: cfg.norm_eps,
            freqs: rotary::frequencies(cfg.self_head_dim(), cfg.rope_theta),
        })
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// `x [batch, len, dim]` at positions `start..`; `state [batch, heads, d, d]` (f32) is
    /// advanced.
    pub fn forward(&self, x: &Tensor, start: usize, state: &mut Tensor) -> Result<Tensor> {
        let (b, t, dim) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let heads = |p: Tensor| p.reshape((b, t, h, d));
        let (cos, sin) = rotary::tables(t, start, &self.freqs, x.device())?;
        let q = rotary::rotate(&heads(self.q_proj.forward(x)?)?, &cos, &sin)?;
        let k = rotary::rotate(&heads(self.k_proj.forward(x)?)?, &cos, &sin)?;
        let k = (k * f64::from((d as f32).powf(-0.5)))?;
        let v = heads(self.v_proj.forward(x)?)?;
        // log γ = logsigmoid(gt(x)) / 16: min(z, 0) − log(1 + e^−|z|).
        let z = self.gt_proj.forward(x)?.to_dtype(candle_core::DType::F32)?;
        let log_sigmoid = (z.minimum(0.0)? - ((z.abs()?.neg()?.exp()? + 1.0)?.log())?)?;
        let log_decay = (log_sigmoid / f64::from(GATE_LOGIT_NORMALIZER))?;
        let (o, new_state) =
            kernels::gated_retention::gated_retention(&q, &k, &v, &log_decay, Some(state))?;
        *state = new_state;
        let o = norm::rms_norm_heads(&o, self.eps)?.reshape((b, t, dim))?;
        let gated = (self.g_proj.forward(x)?.silu()? * o)?;
        Ok(self.out_proj.forward(&gated)?)
    }
}
