//! The sliding-window attention mixer (docs/yoco.md §3, `sliding_window_attention.py`): multi-head
//! softmax attention in which each query sees the last `window` keys, itself included, with
//! interleaved RoPE on q and k. The cache keeps the last `window − 1` keys and values: all the
//! next query needs besides its own.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::window_attention::{window_attention, WindowSpec};
use layers::Linear;

use crate::config::Config;
use crate::error::Result;
use crate::ffn::linear;
use crate::rotary;

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

/// The keys and values of the last `window − 1` positions (after RoPE), `[batch, len, heads, d]`
/// on the model's device; empty before the first call.
#[derive(Debug, Clone, Default)]
pub struct WindowCache {
    pub(crate) kv: Option<(Tensor, Tensor)>,
}

impl WindowCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(1).unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        let heads = |p: Tensor| p.reshape((b, t, h, d));
        let (cos, sin) = rotary::tables(t, start, &self.freqs, x.device())?;
        let q = rotary::rotate(&heads(self.q_proj.forward(x)?)?, &cos, &sin)?;
        let k = rotary::rotate(&heads(self.k_proj.forward(x)?)?, &cos, &sin)?;
        let v = heads(self.v_proj.forward(x)?)?;
        // Keys of the previous window − 1 positions, then this call's.
        let past = cache.len();
        let (keys, values) = match &cache.kv {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 1)?, Tensor::cat(&[pv, &v], 1)?),
            None => (k, v),
        };
        let o = window_attention(
            &q,
            &keys,
            &values,
            &WindowSpec {
                q_offset: start,
                k_offset: start - past,
                window: Some(self.window),
                scale: (d as f32).powf(-0.5),
            },
        )?;
        let keep = (past + t).min(self.window - 1);
        let tail = |x: &Tensor| x.narrow(1, past + t - keep, keep)?.contiguous();
        cache.kv = (keep > 0)
            .then(|| Ok::<_, candle_core::Error>((tail(&keys)?, tail(&values)?)))
            .transpose()?;
        Ok(self.out_proj.forward(&o.reshape((b, t, dim))?)?)
    }
}
