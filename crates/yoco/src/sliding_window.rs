//! The sliding-window attention mixer (docs/yoco.md §3, `sliding_window_attention.py`): multi-head
//! softmax attention in which each query sees the last `window` keys, itself included, with
//! interleaved RoPE on q and k. The cache keeps the last `window − 1` keys and values: all the
//! next query needs besides its own.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::window_attention::{window_attention_cpu, WindowInput, WindowShape};
use layers::Linear;

use crate::config::Config;
use crate::error::Result;
use crate::ffn::linear;
use crate::{host, rotary};

#[derive(Debug, Clone)]
pub struct SlidingWindowAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    window: usize,
    freqs: Vec<f32>,
}

/// The keys and values of the last `window − 1` positions (after RoPE), `[batch, len, heads, d]`.
#[derive(Debug, Clone, Default)]
pub struct WindowCache {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) len: usize,
}

impl SlidingWindowAttention {
    pub fn new(cfg: &Config, window: usize, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(SlidingWindowAttention {
            q_proj: linear(d, d, vb.pp("q_proj"))?,
            k_proj: linear(d, d, vb.pp("k_proj"))?,
            v_proj: linear(d, d, vb.pp("v_proj"))?,
            out_proj: linear(d, d, vb.pp("out_proj"))?,
            heads: cfg.n_self_heads,
            head_dim: cfg.self_head_dim(),
            window,
            freqs: rotary::frequencies(cfg.self_head_dim(), cfg.rope_theta),
        })
    }

    /// Elements of one sequence's full ring (keys and values).
    pub fn cache_len(&self) -> usize {
        2 * self.window * self.heads * self.head_dim
    }

    pub fn forward(&self, x: &Tensor, start: usize, cache: &mut WindowCache) -> Result<Tensor> {
        let (b, t, dim) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        let row = h * d;
        let mut q = host::to_vec(&self.q_proj.forward(x)?)?;
        let mut k = host::to_vec(&self.k_proj.forward(x)?)?;
        let v = host::to_vec(&self.v_proj.forward(x)?)?;
        rotary::apply(&mut q, t, h, d, start, &self.freqs);
        rotary::apply(&mut k, t, h, d, start, &self.freqs);
        // Keys of the previous window − 1 positions, then this call's.
        let past = cache.len;
        let keys = host::concat_time(&cache.k, past, &k, t, b, row);
        let values = host::concat_time(&cache.v, past, &v, t, b, row);
        let o = window_attention_cpu(&WindowInput {
            shape: WindowShape {
                batch: b,
                q_len: t,
                k_len: past + t,
                heads: h,
                kv_heads: h,
                head_dim: d,
                q_offset: start,
                k_offset: start - past,
                window: Some(self.window),
            },
            q: &q,
            k: &keys,
            v: &values,
            scale: (d as f32).powf(-0.5),
        })?;
        let keep = (past + t).min(self.window - 1);
        cache.k = host::tail_time(&keys, past + t, keep, b, row);
        cache.v = host::tail_time(&values, past + t, keep, b, row);
        cache.len = keep;
        let o = host::from_vec(o, &[b, t, dim], x.device())?;
        Ok(self.out_proj.forward(&o)?)
    }
}
