//! The decoding state of a batch of sequences: per recurrent layer the conv inputs and the RG-LRU
//! state, per attention layer a ring of `window` keys/values. Its size is fixed at creation and
//! does not grow with the number of tokens.
use candle_core::{DType, Device, Tensor};

use crate::config::{BlockType, Config};
use crate::local_attention::AttentionState;
use crate::recurrent_block::RecurrentState;

#[derive(Debug, Clone)]
pub enum LayerState {
    Recurrent(RecurrentState),
    Attention(AttentionState),
}

#[derive(Debug, Clone)]
pub struct State {
    pub(crate) layers: Vec<LayerState>,
    /// Per sequence: the position of its next token (tokens seen so far, padding excluded).
    pub(crate) next_pos: Vec<i64>,
}

impl State {
    pub fn new(cfg: &Config, batch: usize, dtype: DType, device: &Device) -> crate::Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| match cfg.block_type(i) {
                BlockType::Recurrent => Ok(LayerState::Recurrent(RecurrentState {
                    conv: layers::alloc::zeros(
                        "the conv1d state",
                        &[batch, cfg.conv1d_width - 1, cfg.lru_width],
                        dtype,
                        device,
                    )?,
                    h: layers::alloc::zeros(
                        "the RG-LRU state",
                        &[batch, cfg.lru_width],
                        DType::F32,
                        device,
                    )?,
                })),
                BlockType::Attention => Ok(LayerState::Attention(AttentionState::new(
                    cfg, batch, dtype, device,
                )?)),
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(State {
            layers,
            next_pos: vec![0; batch],
        })
    }

    pub fn batch(&self) -> usize {
        self.next_pos.len()
    }

    /// Tokens seen so far by each sequence.
    pub fn positions(&self) -> &[i64] {
        &self.next_pos
    }

    /// Bytes held by the state's tensors.
    pub fn size_in_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        self.layers
            .iter()
            .map(|l| match l {
                LayerState::Recurrent(r) => bytes(&r.conv) + bytes(&r.h),
                LayerState::Attention(a) => bytes(&a.k) + bytes(&a.v) + a.slot_pos.len() * 8,
            })
            .sum()
    }
}
