//! Griffin's recurrent block (docs/griffin.md §2): a GeLU branch times (Linear → Conv1D → RG-LRU).
use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;
use layers::Linear;

use crate::config::Config;
use crate::conv1d::Conv1d;
use crate::rg_lru::RgLru;
use crate::step::Step;

#[derive(Debug, Clone)]
pub struct RecurrentBlock {
    /// `[linear_x; linear_y]` stacked (both read the block's input): one product.
    linear_xy: Linear,
    lru_width: usize,
    linear_out: Linear,
    conv_1d: Conv1d,
    rg_lru: RgLru,
}

/// A recurrent block's state per sequence: the conv's last inputs and the RG-LRU's `h` (f32).
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// `[B, K-1, lru_width]`.
    pub conv: Tensor,
    /// `[B, lru_width]`, f32.
    pub h: Tensor,
}

impl RecurrentBlock {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, w) = (cfg.hidden_size, cfg.lru_width);
        Ok(RecurrentBlock {
            linear_xy: Linear::load_stacked(d, &[("linear_x", w), ("linear_y", w)], true, &vb)?,
            lru_width: w,
            linear_out: Linear::load(w, d, true, &vb.pp("linear_out"))?,
            conv_1d: Conv1d::new(w, cfg.conv1d_width, vb.pp("conv_1d"))?,
            rg_lru: RgLru::new(w, cfg.num_attention_heads, vb.pp("rg_lru"))?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut RecurrentState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        self.linear_out.forward(&self.mix(x, state, step)?)
    }

    /// [`RecurrentBlock::forward`] plus `residual` (the residual block's input), added by
    /// `linear_out` as it stores its tiles.
    pub fn forward_add(
        &self,
        x: &Tensor,
        residual: &Tensor,
        state: &mut RecurrentState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        self.linear_out
            .forward_add(&self.mix(x, state, step)?, residual)
    }

    /// The RG-LRU branch times the GeLU branch, before `linear_out`: `[B, T, lru_width]`.
    fn mix(
        &self,
        x: &Tensor,
        state: &mut RecurrentState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        let xy = self.linear_xy.forward(x)?;
        let w = self.lru_width;
        let mut u = xy.narrow(D::Minus1, 0, w)?;
        let y = xy.narrow(D::Minus1, w, w)?; // the GeLU branch, applied with the RG-LRU's output
        if !step.all_real() {
            u = u.broadcast_mul(&step.real_mask(u.dtype())?)?; // padding adds nothing to the conv
        }
        let (u, conv) = self.conv_1d.forward(&u, &state.conv, step)?;
        let (u, h) = self.rg_lru.forward(&u, &y, &state.h, step)?;
        state.conv = conv;
        state.h = h;
        Ok(u)
    }
}
