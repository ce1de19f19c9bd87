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
use kernels::gated_retention::{gated_retention_cpu, RetentionInput, RetentionShape};
use layers::Linear;

use crate::config::Config;
use crate::error::Result;
use crate::ffn::linear;
use crate::{host, norm, rotary};

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

/// `log σ(z)`, stable for either sign.
fn log_sigmoid(z: f32) -> f32 {
    z.min(0.0) - (-z.abs()).exp().ln_1p()
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

    /// Bytes of one sequence's state.
    pub fn state_len(&self) -> usize {
        self.heads * self.head_dim * self.head_dim
    }

    /// `x [batch, len, dim]` at positions `start..`; `state [batch, heads, d, d]` is advanced.
    pub fn forward(&self, x: &Tensor, start: usize, state: &mut Vec<f32>) -> Result<Tensor> {
        let (b, t, dim) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let mut q = host::to_vec(&self.q_proj.forward(x)?)?;
        let mut k = host::to_vec(&self.k_proj.forward(x)?)?;
        let v = host::to_vec(&self.v_proj.forward(x)?)?;
        let log_decay: Vec<f32> = host::to_vec(&self.gt_proj.forward(x)?)?
            .into_iter()
            .map(|z| log_sigmoid(z) / GATE_LOGIT_NORMALIZER)
            .collect();
        rotary::apply(&mut q, t, h, d, start, &self.freqs);
        rotary::apply(&mut k, t, h, d, start, &self.freqs);
        let scale = (d as f32).powf(-0.5);
        k.iter_mut().for_each(|x| *x *= scale);
        let out = gated_retention_cpu(&RetentionInput {
            shape: RetentionShape::new(b, t, h, d, d)?,
            q: &q,
            k: &k,
            v: &v,
            log_decay: &log_decay,
            state: Some(state),
        })?;
        *state = out.state;
        let mut o = out.o;
        norm::rms_norm_heads(&mut o, d, self.eps);
        let o = host::from_vec(o, &[b, t, dim], x.device())?;
        let gated = (self.g_proj.forward(x)?.silu()? * o)?;
        Ok(self.out_proj.forward(&gated)?)
    }
}
