//! A pre-norm layer, the same for both halves (`yoco.py` `DecoderLayer`):
//! `h = x + mixer(mixer_layer_norm(x))`, `out = h + ffn(final_layer_norm(h))`.
use candle_core::Tensor;
use candle_nn::{RmsNorm, VarBuilder};
use kernels::cpu_math::add_tensors;

use crate::config::Config;
use crate::error::Result;
use crate::ffn::FeedForward;
use crate::norm;

#[derive(Debug, Clone)]
pub struct Sublayers {
    mixer_layer_norm: RmsNorm,
    ffn: FeedForward,
    final_layer_norm: RmsNorm,
}

impl Sublayers {
    pub fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        Ok(Sublayers {
            mixer_layer_norm: norm::rms_norm(cfg.dim, cfg.norm_eps, vb.pp("mixer_layer_norm"))?,
            ffn: FeedForward::new(cfg.dim, cfg.hidden_dim, vb.pp("ffn"))?,
            final_layer_norm: norm::rms_norm(cfg.dim, cfg.norm_eps, vb.pp("final_layer_norm"))?,
        })
    }

    /// The layer around a mixer: `mixer` maps the normalised input to the mixer output.
    pub fn forward(
        &self,
        x: &Tensor,
        mixer: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let h = add_tensors(x, &mixer(&norm::apply(&self.mixer_layer_norm, x)?)?)?;
        self.ffn
            .forward_add(&norm::apply(&self.final_layer_norm, &h)?, &h)
    }
}
