//! The residual block (docs/griffin.md §1): `res = x + temporal(norm(x)); out = res +
//! mlp(norm(res))`.
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::{BlockType, Config};
use crate::local_attention::LocalAttention;
use crate::mlp::Mlp;
use crate::recurrent_block::RecurrentBlock;
use crate::rms_norm::RmsNorm;
use crate::state::LayerState;
use crate::step::Step;

#[derive(Debug, Clone)]
pub enum TemporalBlock {
    Recurrent(RecurrentBlock),
    Attention(LocalAttention),
}

#[derive(Debug, Clone)]
pub struct ResidualBlock {
    temporal_pre_norm: RmsNorm,
    temporal_block: TemporalBlock,
    channel_pre_norm: RmsNorm,
    mlp_block: Mlp,
}

impl ResidualBlock {
    pub fn new(cfg: &Config, block: BlockType, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let temporal_block = match block {
            BlockType::Recurrent => {
                TemporalBlock::Recurrent(RecurrentBlock::new(cfg, vb.pp("temporal_block"))?)
            }
            BlockType::Attention => {
                TemporalBlock::Attention(LocalAttention::new(cfg, vb.pp("temporal_block"))?)
            }
        };
        Ok(ResidualBlock {
            temporal_pre_norm: RmsNorm::new(d, cfg.rms_norm_eps, vb.pp("temporal_pre_norm"))?,
            temporal_block,
            channel_pre_norm: RmsNorm::new(d, cfg.rms_norm_eps, vb.pp("channel_pre_norm"))?,
            mlp_block: Mlp::new(d, cfg.mlp_width, vb.pp("mlp_block"))?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut LayerState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        let normed = self.temporal_pre_norm.forward(x)?;
        // Each branch's last product adds the residual as it stores its output.
        let residual = match (&self.temporal_block, state) {
            (TemporalBlock::Recurrent(b), LayerState::Recurrent(s)) => {
                b.forward_add(&normed, x, s, step)?
            }
            (TemporalBlock::Attention(b), LayerState::Attention(s)) => {
                b.forward_add(&normed, x, s, step)?
            }
            _ => candle_core::bail!("griffin: a layer's state does not match its block type"),
        };
        self.mlp_block
            .forward_add(&self.channel_pre_norm.forward(&residual)?, &residual)
    }
}
