//! Fastformer's additive attention, as the official code computes it (docs/fastformer.md §2):
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
//! Linear in sequence length: two pooled vectors per head, no T×T matrix. The pooling runs as one
//! fused kernel (`kernels::additive_attention`).
use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use kernels::additive_attention::op::{additive_attention, AdditiveWeights};
use kernels::additive_attention::ScoreForm;

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
        })
    }

    /// `x` `[B, T, D]`, `mask` `[B, T]` (1 token, 0 padding).
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mixed_query = self.query.forward(x)?;
        let mixed_key = self.key.forward(x)?;
        let value = match &self.value {
            Some(v) => v.forward(x)?,
            None => mixed_query.clone(),
        };
        // The fused kernel: both pooled vectors and k̄ ⊙ v in one call, linear in T.
        let weights = AdditiveWeights {
            form: ScoreForm::Full,
            heads: self.heads,
            wq: self.query_att.weight(),
            bq: self.query_att.bias(),
            wk: self.key_att.weight(),
            bk: self.key_att.bias(),
            mask: Some(mask),
        };
        let weighted = additive_attention(&mixed_query, &mixed_key, &value, &weights)?;
        self.transform.forward(&weighted)? + mixed_query
    }
}
