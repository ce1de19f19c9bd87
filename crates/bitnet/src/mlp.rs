//! The feed-forward block (docs/bitnet.md §2): `down_proj(ffn_sub_norm(relu(gate_proj x)² ⊙ up_proj
//! x))`.
use candle_core::{Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

use crate::bit_linear::{forward_shared, BitLinear};
use crate::config::Config;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: BitLinear,
    up_proj: BitLinear,
    down_proj: BitLinear,
    ffn_sub_norm: RmsNorm,
}

impl Mlp {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, i, f) = (cfg.hidden_size, cfg.intermediate_size, cfg.weight_format);
        Ok(Mlp {
            gate_proj: BitLinear::load(vb.pp("gate_proj"), h, i, f)?,
            up_proj: BitLinear::load(vb.pp("up_proj"), h, i, f)?,
            down_proj: BitLinear::load(vb.pp("down_proj"), i, h, f)?,
            ffn_sub_norm: crate::rms_norm(i, cfg.rms_norm_eps, vb.pp("ffn_sub_norm"))?,
        })
    }

    pub fn projections(&self) -> [&BitLinear; 3] {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate_up = forward_shared(x, &[&self.gate_proj, &self.up_proj])?;
        // relu² (HF `ReLUSquaredActivation`); it overflows f16, hence f32 or bf16 only.
        let hidden = (gate_up[0].relu()?.sqr()? * &gate_up[1])?;
        self.down_proj.forward(&self.ffn_sub_norm.forward(&hidden)?)
    }
}
