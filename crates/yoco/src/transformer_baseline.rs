//! The Transformer YOCO is measured against (SPEC §1.5; the paper's Table 1 comparison): the same
//! width, depth, FFN and vocabulary, every one of its `n_layers` layers full causal attention with
//! the cross-decoder's GQA heads, and each layer its own KV cache. Built from the same pieces
//! (RMSNorm, SwiGLU, interleaved RoPE, `kernels::window_attention` with no window), so a
//! comparison measures the architecture, not the implementation.
use candle_core::{Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};
use kernels::cpu_linear::Linear;
use kernels::window_attention::{window_attention_cpu, WindowInput, WindowShape};

use crate::cache::SharedKv;
use crate::config::Config;
use crate::decoder_layer::Sublayers;
use crate::error::{Result, YocoError};
use crate::ffn::linear;
use crate::{host, norm, rotary};

#[derive(Debug, Clone)]
struct Layer {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    sub: Sublayers,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    cfg: Config,
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    layer_norm: RmsNorm,
    output_projection: Linear,
    freqs: Vec<f32>,
    device: Device,
}

/// Its KV cache: one `[batch, capacity, kv_heads, head_dim]` key and value buffer per layer.
#[derive(Debug, Clone)]
pub struct TransformerCache {
    layers: Vec<SharedKv>,
    len: usize,
}

impl TransformerCache {
    /// The cache for `cfg` at `capacity` positions (allocated lazily by the OS until written).
    pub fn new(cfg: &Config, batch: usize, capacity: usize) -> Self {
        let row = cfg.n_attn_kv_heads * cfg.attn_head_dim();
        TransformerCache {
            layers: (0..cfg.n_layers)
                .map(|_| SharedKv::new(batch, capacity, row))
                .collect(),
            len: 0,
        }
    }

    /// Bytes of its buffers.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * 4)
            .sum()
    }
}

impl Transformer {
    /// Layer `i` reads `layers.{i}.mixer.{q,k,v,out}_proj` and the usual norms and FFN.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (dim, d) = (cfg.dim, cfg.attn_head_dim());
        let kv = cfg.n_attn_kv_heads * d;
        let layers = (0..cfg.n_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Layer {
                    q_proj: linear(dim, dim, vb.pp("mixer.q_proj"))?,
                    k_proj: linear(dim, kv, vb.pp("mixer.k_proj"))?,
                    v_proj: linear(dim, kv, vb.pp("mixer.v_proj"))?,
                    out_proj: linear(dim, dim, vb.pp("mixer.out_proj"))?,
                    sub: Sublayers::new(cfg, &vb)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = vb
            .get((cfg.vocab_size, dim), "embed_tokens.weight")
            .map_err(|e| YocoError::Weights(e.to_string()))?;
        Ok(Transformer {
            cfg: cfg.clone(),
            embed_tokens: Embedding::new(embed, dim),
            layers,
            layer_norm: norm::rms_norm(dim, cfg.norm_eps, vb.pp("layer_norm"))?,
            output_projection: linear(dim, cfg.vocab_size, vb.pp("output_projection"))?,
            freqs: rotary::frequencies(d, cfg.rope_theta),
            device: vb.device().clone(),
        })
    }

    pub fn new_cache(&self, batch: usize, capacity: usize) -> TransformerCache {
        TransformerCache::new(&self.cfg, batch, capacity)
    }

    /// The last position's logits `[batch, vocab]` of `tokens` after the cached positions.
    pub fn forward_last(&self, tokens: &[&[u32]], cache: &mut TransformerCache) -> Result<Tensor> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let start = cache.len;
        if t == 0 || start + t > cache.layers[0].capacity {
            return Err(YocoError::Cache(format!(
                "{start} cached + {t} new positions do not fit a capacity of {}",
                cache.layers[0].capacity
            )));
        }
        let ids: Vec<u32> = tokens.iter().flat_map(|s| s.iter().copied()).collect();
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let mut x = (self.embed_tokens.forward(&ids)? * (self.cfg.dim as f64).sqrt())?;
        let (h, hk, d) = (
            self.cfg.n_attn_heads,
            self.cfg.n_attn_kv_heads,
            self.cfg.attn_head_dim(),
        );
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.sub.forward(&x, |hn| {
                let mut q = host::to_vec(&layer.q_proj.forward(hn)?)?;
                let mut k = host::to_vec(&layer.k_proj.forward(hn)?)?;
                let v = host::to_vec(&layer.v_proj.forward(hn)?)?;
                rotary::apply(&mut q, t, h, d, start, &self.freqs);
                rotary::apply(&mut k, t, hk, d, start, &self.freqs);
                kv.write(start, t, &k, &v);
                let o = window_attention_cpu(&WindowInput {
                    shape: WindowShape {
                        batch: b,
                        q_len: t,
                        k_len: kv.capacity,
                        heads: h,
                        kv_heads: hk,
                        head_dim: d,
                        q_offset: start,
                        k_offset: 0,
                        window: None,
                    },
                    q: &q,
                    k: &kv.k,
                    v: &kv.v,
                    scale: (d as f32).powf(-0.5),
                })?;
                Ok(layer.out_proj.forward(&host::from_vec(
                    o,
                    &[b, t, self.cfg.dim],
                    hn.device(),
                )?)?)
            })?;
        }
        cache.len += t;
        let last = x.narrow(1, t - 1, 1)?;
        Ok(self
            .output_projection
            .forward(&norm::apply(&self.layer_norm, &last)?)?
            .squeeze(1)?)
    }
}
