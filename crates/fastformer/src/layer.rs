//! A Fastformer layer: additive attention, then BERT's output and feed-forward sublayers
//! (`LayerNorm(dense(·) + residual)`, intermediate GELU with erf).
use candle_core::{Module, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use crate::additive_attention::AdditiveAttention;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct Layer {
    attention: AdditiveAttention,
    attention_dense: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output_dense: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Layer {
            attention: AdditiveAttention::new(cfg, vb.pp("attention.self"))?,
            attention_dense: linear(d, d, vb.pp("attention.output.dense"))?,
            attention_norm: layer_norm(d, eps, vb.pp("attention.output.LayerNorm"))?,
            intermediate: linear(d, i, vb.pp("intermediate.dense"))?,
            output_dense: linear(i, d, vb.pp("output.dense"))?,
            output_norm: layer_norm(d, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let attended = self.attention.forward(x, mask)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_dense.forward(&attended)? + x)?)?;
        let inter = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.output_norm
            .forward(&(self.output_dense.forward(&inter)? + attended)?)
    }
}
