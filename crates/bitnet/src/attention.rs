//! Grouped-query self-attention with RoPE, BitLinear projections and SubLN (docs/bitnet.md §2):
//! `o_proj(attn_sub_norm(softmax(q kᵀ / sqrt(d) + causal) v))`, the attention on the
//! `kernels::window_attention` op (no window: causal).
use candle_core::{Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use kernels::window_attention::{window_attention, WindowSpec};

use crate::bit_linear::{forward_shared, BitLinear};
use crate::cache::Cache;
use crate::config::Config;
use crate::error::Result;
use crate::rotary;

#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: BitLinear,
    k_proj: BitLinear,
    v_proj: BitLinear,
    o_proj: BitLinear,
    attn_sub_norm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let q_out = cfg.num_attention_heads * d;
        let kv_out = cfg.num_key_value_heads * d;
        let f = cfg.weight_format;
        Ok(Attention {
            q_proj: BitLinear::load(vb.pp("q_proj"), h, q_out, f)?,
            k_proj: BitLinear::load(vb.pp("k_proj"), h, kv_out, f)?,
            v_proj: BitLinear::load(vb.pp("v_proj"), h, kv_out, f)?,
            o_proj: BitLinear::load(vb.pp("o_proj"), q_out, h, f)?,
            attn_sub_norm: crate::rms_norm(q_out, cfg.rms_norm_eps, vb.pp("attn_sub_norm"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: d,
        })
    }

    pub fn projections(&self) -> [&BitLinear; 4] {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj]
    }

    /// `x [batch, len, hidden]` at positions `cache.len()..`; appends this layer's keys/values.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        cache: &mut Cache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let d = self.head_dim;
        let qkv = forward_shared(x, &[&self.q_proj, &self.k_proj, &self.v_proj])?;
        // [batch, len, heads, head_dim] throughout, as the projections give it.
        let q = rotary::apply(&qkv[0].reshape((b, t, self.heads, d))?, &rope.0, &rope.1)?;
        let k = rotary::apply(&qkv[1].reshape((b, t, self.kv_heads, d))?, &rope.0, &rope.1)?;
        let v = qkv[2].reshape((b, t, self.kv_heads, d))?;
        let (k, v) = cache.append(layer, &k, &v)?;
        let total = k.dim(1)?;
        // Causal attention over the cached keys: online softmax over the visible keys, no score
        // matrix (computed in f32 whatever the model's dtype).
        let out = window_attention(
            &q,
            &k,
            &v,
            &WindowSpec {
                q_offset: total - t,
                k_offset: 0,
                window: None,
                scale: (d as f32).powf(-0.5),
            },
        )?
        .reshape((b, t, self.heads * d))?;
        let out = self.attn_sub_norm.forward(&out)?;
        self.o_proj.forward(&out)
    }
}
