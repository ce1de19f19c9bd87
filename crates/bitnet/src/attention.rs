//! Grouped-query self-attention with RoPE, BitLinear projections and SubLN (SPEC §3.2):
//! `o_proj(attn_sub_norm(softmax(q kᵀ / sqrt(d) + causal) v))`.
use candle_core::{DType, Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

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
        let heads = |y: &Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let q = rotary::apply(&heads(&qkv[0], self.heads)?, &rope.0, &rope.1)?;
        let k = rotary::apply(&heads(&qkv[1], self.kv_heads)?, &rope.0, &rope.1)?;
        let v = heads(&qkv[2], self.kv_heads)?;
        let (k, v) = cache.append(layer, &k, &v)?;
        let total = k.dim(2)?;
        let groups = self.heads / self.kv_heads;
        // GQA: query head h reads KV head h / groups.
        let q = q.reshape((b, self.kv_heads, groups * t, d))?;
        let scores = (q.matmul(&k.t()?)? * (d as f64).powf(-0.5))?;
        let scores = scores.reshape((b, self.heads, t, total))?;
        let scores = if t > 1 {
            scores.broadcast_add(&causal_mask(t, total, x.dtype(), x.device())?)?
        } else {
            scores
        };
        // Softmax in f32, as HF's eager attention.
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?;
        let out = probs
            .reshape((b, self.kv_heads, groups * t, total))?
            .matmul(&v)?
            .reshape((b, self.heads, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * d))?;
        let out = self.attn_sub_norm.forward(&out)?;
        self.o_proj.forward(&out)
    }
}

/// `[len, total]`: 0 where query i (at position total − len + i) may see key j, −∞ after it.
fn causal_mask(
    len: usize,
    total: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let past = total - len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (len, total), device)?.to_dtype(dtype)?)
}
