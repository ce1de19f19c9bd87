//! Causal grouped-query self-attention over the full KV cache, with rotate-half RoPE (HF Llama's
//! `rotate_half`: the pairs are (i, i + d/2)).
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use kernels::window_attention::{window_attention, WindowSpec};
use layers::Linear;

use crate::config::Config;
use crate::error::{Result, TransformerError};
use layers::kv_cache::KvBuffer;

/// A bias-free linear layer whose decode steps take the threaded GEMV (`kernels::cpu_linear`).
pub(crate) fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    // The weight as shipped (bf16 stays bf16: layers::linear::get_as_shipped).
    Linear::load(i, o, false, &vb).map_err(|e| TransformerError::Weights(e.to_string()))
}

/// RoPE's cosines and sines `[t, head_dim / 2]` for positions `start..start + t`:
/// angle = pos · θ^(−2i/d), computed in f64 and rounded once.
pub fn rope_tables(
    cfg: &Config,
    start: usize,
    t: usize,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let d = cfg.head_dim();
    let half = d / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| cfg.rope_theta.powf(-((2 * i) as f64) / d as f64))
        .collect();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for pos in start..start + t {
        for &f in &inv_freq {
            let angle = pos as f64 * f;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (t, half), device)?,
        Tensor::from_vec(sin, (t, half), device)?,
    ))
}

#[derive(Debug, Clone)]
pub struct Attention {
    /// `[q_proj; k_proj; v_proj]`: one product (one threaded GEMV when decoding) for all three.
    qkv_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (dim, h, hk, d) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.kv_heads(),
            cfg.head_dim(),
        );
        Ok(Attention {
            qkv_proj: Linear::load_stacked(
                dim,
                &[("q_proj", h * d), ("k_proj", hk * d), ("v_proj", hk * d)],
                false,
                &vb,
            )
            .map_err(|e| TransformerError::Weights(e.to_string()))?,
            o_proj: linear(h * d, dim, vb.pp("o_proj"))?,
            heads: h,
            kv_heads: hk,
            head_dim: d,
        })
    }

    /// `x` `[B, T, D]` at positions `start..start + T`: writes its keys and values into `kv` (one
    /// layer's buffers) and attends over every cached position up to each query's own. With
    /// `last_only`, only the last position's query attends and the output is `[B, 1, D]` (every
    /// position's keys and values are still cached).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        kv: &mut KvBuffer,
        start: usize,
        last_only: bool,
    ) -> Result<Tensor> {
        let o = self.attend(x, rope, kv, start, last_only)?;
        Ok(self.o_proj.forward(&o)?)
    }

    /// [`Attention::forward`] plus `residual` (`[B, T, D]`, or `[B, 1, D]` with `last_only`),
    /// added by `o_proj` as it stores its output (for a prompt on an AVX-512 CPU; a second pass
    /// otherwise).
    pub fn forward_add(
        &self,
        x: &Tensor,
        residual: &Tensor,
        rope: &(Tensor, Tensor),
        kv: &mut KvBuffer,
        start: usize,
        last_only: bool,
    ) -> Result<Tensor> {
        let o = self.attend(x, rope, kv, start, last_only)?;
        Ok(self.o_proj.forward_add(&o, residual)?)
    }

    /// The heads' outputs before `o_proj`, `[B, T, heads · head_dim]`.
    fn attend(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        kv: &mut KvBuffer,
        start: usize,
        last_only: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, hk, d) = (self.heads, self.kv_heads, self.head_dim);
        let rotate = |p: Tensor, heads: usize| -> Result<Tensor> {
            let p = p.reshape((b, t, heads, d))?;
            Ok(candle_nn::rotary_emb::rope_thd(&p, &rope.0, &rope.1)?)
        };
        let qkv = self.qkv_proj.forward(x)?;
        let q = rotate(qkv.narrow(2, 0, h * d)?, h)?;
        let k = rotate(qkv.narrow(2, h * d, hk * d)?, hk)?;
        let v = qkv.narrow(2, (h + hk) * d, hk * d)?;
        kv.write(start, &k.reshape((b, t, hk * d))?, &v)?;
        let (q, q_start, t) = if last_only {
            (q.narrow(1, t - 1, 1)?, start + t - 1, 1)
        } else {
            (q, start, t)
        };
        let capacity = kv.capacity();
        let o = window_attention(
            &q,
            &kv.k.reshape((b, capacity, hk, d))?,
            &kv.v.reshape((b, capacity, hk, d))?,
            &WindowSpec {
                q_offset: q_start,
                k_offset: 0,
                window: None,
                scale: (d as f32).powf(-0.5),
            },
        )?;
        Ok(o.reshape((b, t, h * d))?)
    }
}
