//! Fastformer's additive attention, as the official code computes it (SPEC §4.2):
//!
//! ```text
//! q = query(x), k = key(x)                                  (Linear D -> D)
//! α = softmax_t(query_att(q)ᵀ / sqrt(d) + mask)             (query_att: Linear D -> H, all dims + bias)
//! q̄_h = Σ_t α_{h,t} q_{t,h}                                  (global query, per head)
//! p_t = k_t ⊙ q̄                                              (element-wise)
//! β = softmax_t(key_att(p)ᵀ / sqrt(d) + mask);  k̄_h = Σ_t β_{h,t} p_{t,h}   (global key)
//! out_t = transform(k̄ ⊙ v_t) + q_t                           (v = q: query-value sharing)
//! ```
//!
//! Linear in sequence length: two pooled vectors per head, no T×T matrix.
use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use crate::config::Config;

#[derive(Debug, Clone)]
pub struct AdditiveAttention {
    query: Linear,
    query_att: Linear,
    key: Linear,
    key_att: Linear,
    /// A separate value projection when the config turns query-value sharing off.
    value: Option<Linear>,
    transform: Linear,
    heads: usize,
    head_dim: usize,
}

impl AdditiveAttention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h) = (cfg.hidden_size, cfg.num_attention_heads);
        Ok(AdditiveAttention {
            query: linear(d, d, vb.pp("query"))?,
            query_att: linear(d, h, vb.pp("query_att"))?,
            key: linear(d, d, vb.pp("key"))?,
            key_att: linear(d, h, vb.pp("key_att"))?,
            value: if cfg.share_query_value {
                None
            } else {
                Some(linear(d, d, vb.pp("value"))?)
            },
            transform: linear(d, d, vb.pp("transform"))?,
            heads: h,
            head_dim: cfg.head_dim(),
        })
    }

    /// `[B, T, D]` -> `[B, H, T, d]`.
    fn heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Softmax over the sequence of `scores` `[B, T, H]` plus the additive mask `[B, 1, T]`,
    /// then the weighted sum of `x` `[B, H, T, d]`: `[B, H, 1, d]`.
    fn pool(&self, scores: &Tensor, mask: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
        let scores =
            (scores.transpose(1, 2)? / (self.head_dim as f64).sqrt())?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?.unsqueeze(2)?;
        weights.matmul(x)
    }

    /// `x` `[B, T, D]`, `mask` `[B, 1, T]` additive (0 for tokens, −10000 for padding).
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let mixed_query = self.query.forward(x)?;
        let mixed_key = self.key.forward(x)?;
        let query_layer = self.heads(&mixed_query)?;
        let pooled_query = self.pool(&self.query_att.forward(&mixed_query)?, mask, &query_layer)?;
        let pooled_query = pooled_query.transpose(1, 2)?.reshape((b, 1, d))?;
        let mixed_query_key = mixed_key.broadcast_mul(&pooled_query)?;
        let pooled_key = self.pool(
            &self.key_att.forward(&mixed_query_key)?,
            mask,
            &self.heads(&mixed_query_key)?,
        )?;
        let value_layer = match &self.value {
            Some(v) => self.heads(&v.forward(x)?)?,
            None => query_layer,
        };
        let weighted = value_layer
            .broadcast_mul(&pooled_key)?
            .transpose(1, 2)?
            .reshape((b, t, d))?;
        self.transform.forward(&weighted)? + mixed_query
    }
}
