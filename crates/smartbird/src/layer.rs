//! A Smart Bird encoder layer: sparse self-attention, then BERT's output and feed-forward
//! sublayers (`LayerNorm(dense(·) + residual)`, intermediate GELU with erf), as the `fastformer`
//! crate's layers.
use candle_core::{Module, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use crate::attention::{AttentionMode, Padding, Profile, SparseSelfAttention};
use crate::config::Config;
use crate::error::{Result, SmartBirdError};

#[derive(Debug, Clone)]
pub struct Layer {
    attention: SparseSelfAttention,
    attention_dense: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output_dense: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    pub fn new(cfg: &Config, index: usize, vb: VarBuilder) -> Result<Self> {
        let (d, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let w = |e: candle_core::Error| SmartBirdError::Weights(e.to_string());
        Ok(Layer {
            attention: SparseSelfAttention::new(
                cfg,
                index,
                vb.pp("attention.self"),
                vb.pp("sketch"),
            )?,
            attention_dense: linear(d, d, vb.pp("attention.output.dense")).map_err(w)?,
            attention_norm: layer_norm(d, eps, vb.pp("attention.output.LayerNorm")).map_err(w)?,
            intermediate: linear(d, i, vb.pp("intermediate.dense")).map_err(w)?,
            output_dense: linear(i, d, vb.pp("output.dense")).map_err(w)?,
            output_norm: layer_norm(d, eps, vb.pp("output.LayerNorm")).map_err(w)?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        padding: &Padding,
        mode: AttentionMode,
        profile: &mut Profile,
    ) -> Result<(Tensor, Option<Vec<i32>>)> {
        let (ctx, indices) = self.attention.forward(x, padding, mode, profile)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_dense.forward(&ctx)? + x)?)?;
        let inter = self.intermediate.forward(&attended)?.gelu_erf()?;
        let out = self
            .output_norm
            .forward(&(self.output_dense.forward(&inter)? + attended)?)?;
        Ok((out, indices))
    }
}
