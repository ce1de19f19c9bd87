//! Grouped-query self-attention with RoPE, BitLinear projections and SubLN (docs/bitnet.md §2):
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
        // [batch, len, heads, head_dim] throughout, as the projections give it.
        let q = rotary::apply(&qkv[0].reshape((b, t, self.heads, d))?, &rope.0, &rope.1)?;
        let k = rotary::apply(&qkv[1].reshape((b, t, self.kv_heads, d))?, &rope.0, &rope.1)?;
        let v = qkv[2].reshape((b, t, self.kv_heads, d))?;
        let (k, v) = cache.append(layer, &k, &v)?;
        let total = k.dim(1)?;
        let out = if x.dtype() == DType::F32 && x.device().is_cpu() {
            self.attend_cpu(&q, &k, &v, total)?
        } else {
            self.attend_tensors(&q, &k, &v, total)?
        };
        let out = self.attn_sub_norm.forward(&out)?;
        self.o_proj.forward(&out)
    }

    /// f32 on the CPU: the causal attention kernel over the cached keys (online softmax over the
    /// visible keys, no score matrix), threaded over (query, head). `[b, t, heads · d]`.
    fn attend_cpu(&self, q: &Tensor, k: &Tensor, v: &Tensor, total: usize) -> Result<Tensor> {
        use kernels::window_attention::{window_attention_cpu, WindowInput, WindowShape};
        let (b, t, _, d) = q.dims4()?;
        let q = q.contiguous()?;
        let shape = WindowShape {
            batch: b,
            q_len: t,
            k_len: total,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: d,
            q_offset: total - t,
            k_offset: 0,
            window: None,
        };
        let out = kernels::cpu::with_cpu_f32s(&[&q, k, v], |s| {
            window_attention_cpu(&WindowInput {
                shape,
                q: s[0],
                k: s[1],
                v: s[2],
                scale: (d as f32).powf(-0.5),
            })
        })
        .ok_or_else(|| {
            crate::error::BitNetError::Input("attention: expected contiguous f32".into())
        })??;
        Ok(Tensor::from_vec(out, (b, t, self.heads * d), q.device())?)
    }

    /// Other dtypes and devices: scores, mask and softmax (in f32, as HF's eager attention) as
    /// tensor ops. `[b, t, heads · d]`.
    fn attend_tensors(&self, q: &Tensor, k: &Tensor, v: &Tensor, total: usize) -> Result<Tensor> {
        let (b, t, _, d) = q.dims4()?;
        let dtype = q.dtype();
        let heads = |y: &Tensor| -> Result<Tensor> { Ok(y.transpose(1, 2)?.contiguous()?) };
        let (q, k, v) = (heads(q)?, heads(k)?, heads(v)?);
        let groups = self.heads / self.kv_heads;
        // GQA: query head h reads KV head h / groups.
        let q = q.reshape((b, self.kv_heads, groups * t, d))?;
        let scores = (q.matmul(&k.t()?)? * (d as f64).powf(-0.5))?;
        let scores = scores.reshape((b, self.heads, t, total))?;
        let scores = if t > 1 {
            scores.broadcast_add(&causal_mask(t, total, dtype, q.device())?)?
        } else {
            scores
        };
        // Softmax in f32, as HF's eager attention.
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
        Ok(probs
            .reshape((b, self.kv_heads, groups * t, total))?
            .matmul(&v)?
            .reshape((b, self.heads, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * d))?)
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
