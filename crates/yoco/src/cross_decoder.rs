//! The cross-decoder (docs/yoco.md §1, `yoco.py` `CrossDecoder`, `cross_attention.py`): one
//! key/value set computed once from the self-decoder's output,
//! `K = RoPE(k_proj(kv_layer_norm(x)))`, `V = v_proj(kv_layer_norm(x))` (GQA heads), written to the
//! shared cache and read by every cross layer: `out_proj(causal attention(RoPE(q_proj(·)), K, V))`.
use candle_core::{Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use kernels::window_attention::{window_attention, WindowSpec};
use layers::Linear;

use crate::cache::SharedKv;
use crate::config::Config;
use crate::decoder_layer::Sublayers;
use crate::error::Result;
use crate::ffn::linear;
use crate::{norm, rotary};

#[derive(Debug, Clone)]
struct CrossLayer {
    q_proj: Linear,
    out_proj: Linear,
    sub: Sublayers,
}

#[derive(Debug, Clone)]
pub struct CrossDecoder {
    k_proj: Linear,
    v_proj: Linear,
    kv_layer_norm: RmsNorm,
    layers: Vec<CrossLayer>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    freqs: Vec<f32>,
}

impl CrossDecoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (dim, d) = (cfg.dim, cfg.attn_head_dim());
        let kv = cfg.n_attn_kv_heads * d;
        let layers = (0..cfg.half_layers())
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(CrossLayer {
                    q_proj: linear(dim, dim, vb.pp("mixer.q_proj"))?,
                    out_proj: linear(dim, dim, vb.pp("mixer.out_proj"))?,
                    sub: Sublayers::new(cfg, &vb)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(CrossDecoder {
            k_proj: linear(dim, kv, vb.pp("k_proj"))?,
            v_proj: linear(dim, kv, vb.pp("v_proj"))?,
            kv_layer_norm: norm::rms_norm(dim, cfg.norm_eps, vb.pp("kv_layer_norm"))?,
            layers,
            heads: cfg.n_attn_heads,
            kv_heads: cfg.n_attn_kv_heads,
            head_dim: d,
            freqs: rotary::frequencies(d, cfg.rope_theta),
        })
    }

    /// Elements of one position's keys (or values).
    pub fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Writes the keys and values of `x` (the self-decoder's output at `start..`) to the cache.
    pub fn write_kv(&self, x: &Tensor, start: usize, kv: &mut SharedKv) -> Result<()> {
        let t = x.dim(1)?;
        let x_norm = norm::apply(&self.kv_layer_norm, x)?;
        let b = x.dim(0)?;
        let (cos, sin) = rotary::tables(t, start, &self.freqs, x.device())?;
        let k = self
            .k_proj
            .forward(&x_norm)?
            .reshape((b, t, self.kv_heads, self.head_dim))?;
        let k = rotary::rotate(&k, &cos, &sin)?.reshape((b, t, self.kv_row()))?;
        kv.write(start, &k, &self.v_proj.forward(&x_norm)?)?;
        Ok(())
    }

    /// The cross layers over `x` at `start..`, attending to every cached position up to each
    /// query (the keys of `x` itself must be written first).
    pub fn forward(&self, x: &Tensor, start: usize, kv: &SharedKv) -> Result<Tensor> {
        let (b, t, dim) = x.dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        // The whole buffer: positions past the queries are never visible, so nothing is copied
        // out of the cache.
        let capacity = kv.capacity();
        let keys = kv.k.reshape((b, capacity, self.kv_heads, d))?;
        let values = kv.v.reshape((b, capacity, self.kv_heads, d))?;
        let spec = WindowSpec {
            q_offset: start,
            k_offset: 0,
            window: None,
            scale: (d as f32).powf(-0.5),
        };
        let (cos, sin) = rotary::tables(t, start, &self.freqs, x.device())?;
        let mut x = x.clone();
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.sub.forward(&x, |hn| {
                let q = layer.q_proj.forward(hn)?.reshape((b, t, h, d))?;
                let q = rotary::rotate(&q, &cos, &sin)?;
                let o = window_attention(&q, &keys, &values, &spec)?;
                Ok(layer.out_proj.forward(&o.reshape((b, t, dim))?)?)
            })?;
            layers::finite::ensure_finite(&x, || {
                format!("in the output of cross-decoder layer {i} of {n}")
            })?;
        }
        Ok(x)
    }
}
