//! Smart Bird's attention (§3, steps 2–3): from the layer's sketch, each head selects its own
//! `K` keys per query (Gumbel-top-K or top-K, `kernels::sparse_attention`), then attends only to
//! them: `softmax(q_i · k_{I_h(i)}ᵀ / sqrt(d_h)) V_{I_h(i)}`. O(N²·d + N·K·D).
//!
//! [`AttentionMode::Dense`] runs ordinary multi-head attention with the same weights: the
//! baseline the benches compare against, and the check that `K = N` without noise is exact.
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use kernels::sparse_attention::{sketch_topk, sparse_attention, Selection};

use crate::config::{Config, Sampling};
use crate::error::{Result, SmartBirdError};
use crate::sketch::Sketch;

/// Seconds a forward pass spent in each of Smart Bird's steps, summed over layers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Profile {
    /// The sketch's log-probabilities (O(N²·d)).
    pub sketch: f64,
    /// Each head's key selection from them (O(heads·N²)).
    pub selection: f64,
    /// The Q/K/V projections and the attention itself (sparse or dense).
    pub attention: f64,
}

/// Which attention a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    /// Smart Bird: sketch, per-head key selection, sparse attention.
    Sparse,
    /// Dense multi-head softmax attention over every token (no sketch).
    Dense,
}

#[derive(Debug, Clone)]
pub struct SparseSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    sketch: Sketch,
    heads: usize,
    head_dim: usize,
    keys: usize,
    gumbel_seed: Option<u64>,
    include_self: bool,
}

/// The inputs' padding: per token 1 (token) or 0, and the additive key mask (0 / −∞) `[batch, N]`.
#[derive(Debug, Clone)]
pub struct Padding {
    pub tokens: Vec<u8>,
    /// `tokens` as a u8 tensor `[batch, N]` on the model's device (the selection's mask).
    pub token_mask: Tensor,
    pub key_mask: Tensor,
}

impl SparseSelfAttention {
    /// Layer `layer`'s attention (its Gumbel seed is `cfg.seed + layer`).
    pub fn new(cfg: &Config, layer: usize, vb: VarBuilder, sketch_vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let w = |e: candle_core::Error| SmartBirdError::Weights(e.to_string());
        Ok(SparseSelfAttention {
            query: linear(h, h, vb.pp("query")).map_err(w)?,
            key: linear(h, h, vb.pp("key")).map_err(w)?,
            value: linear(h, h, vb.pp("value")).map_err(w)?,
            sketch: Sketch::new(cfg, sketch_vb)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            keys: cfg.keys_per_query,
            gumbel_seed: match cfg.sampling {
                Sampling::Gumbel => Some(cfg.seed.wrapping_add(layer as u64)),
                Sampling::TopK => None,
            },
            include_self: cfg.include_self,
        })
    }

    /// The context `[batch, N, hidden]`, and in sparse mode the selected indices
    /// `[batch, heads, N, K]` (`-1`: an empty slot).
    pub fn forward(
        &self,
        x: &Tensor,
        padding: &Padding,
        mode: AttentionMode,
        profile: &mut Profile,
    ) -> Result<(Tensor, Option<Vec<i32>>)> {
        let (b, n, hidden) = x.dims3()?;
        let start = std::time::Instant::now();
        let q = self.query.forward(x)?;
        let k = self.key.forward(x)?;
        let v = self.value.forward(x)?;
        if mode == AttentionMode::Dense {
            let out = self.dense(&q, &k, &v, &padding.key_mask)?;
            profile.attention += start.elapsed().as_secs_f64();
            return Ok((out, None));
        }
        let projections = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let log_probs = self.sketch.log_probs(x, &padding.key_mask)?;
        profile.sketch += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let indices = sketch_topk(
            &log_probs.to_dtype(DType::F32)?,
            Some(&padding.token_mask),
            &Selection {
                heads: self.heads,
                keys: self.keys,
                gumbel_seed: self.gumbel_seed,
                include_self: self.include_self,
            },
        )?;
        profile.selection += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let heads = |t: &Tensor| t.reshape((b, n, self.heads, self.head_dim));
        let o = sparse_attention(
            &heads(&q)?,
            &heads(&k)?,
            &heads(&v)?,
            &indices,
            (self.head_dim as f32).powf(-0.5),
        )?;
        profile.attention += projections + start.elapsed().as_secs_f64();
        Ok((
            o.reshape((b, n, hidden))?,
            Some(indices.flatten_all()?.to_vec1()?),
        ))
    }

    /// Dense multi-head attention, one head at a time (the N×N scores of all heads at once would
    /// not fit at long N).
    fn dense(&self, q: &Tensor, k: &Tensor, v: &Tensor, key_mask: &Tensor) -> Result<Tensor> {
        let (b, n, hidden) = q.dims3()?;
        let split = |t: &Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(q)?, split(k)?, split(v)?);
        let mask = key_mask.unsqueeze(1)?;
        let mut outs = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            let (qh, kh, vh) = (
                q.narrow(1, h, 1)?.squeeze(1)?,
                k.narrow(1, h, 1)?.squeeze(1)?,
                v.narrow(1, h, 1)?.squeeze(1)?,
            );
            let scores =
                (qh.matmul(&kh.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(&mask)?;
            outs.push(candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&vh)?);
        }
        Ok(Tensor::stack(&outs, 2)?.reshape((b, n, hidden))?)
    }
}
