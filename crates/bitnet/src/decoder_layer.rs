//! One pre-norm decoder layer: `h = x + attn(input_layernorm(x))`,
//! `out = h + mlp(post_attention_layernorm(h))`.
use candle_core::{Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

use crate::attention::Attention;
use crate::cache::Cache;
use crate::config::Config;
use crate::error::Result;
use crate::mlp::Mlp;

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub(crate) self_attn: Attention,
    pub(crate) mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            input_layernorm: crate::rms_norm(h, eps, vb.pp("input_layernorm"))?,
            post_attention_layernorm: crate::rms_norm(h, eps, vb.pp("post_attention_layernorm"))?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        cache: &mut Cache,
        layer: usize,
    ) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, rope, cache, layer)?;
        let h = (x + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok((h + mlp)?)
    }
}
