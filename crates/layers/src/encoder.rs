//! The pieces around an encoder that Fastformer and Smart Bird share (the official Fastformer
//! code's, which Smart Bird's reconstruction follows): learned word and position embeddings with
//! a LayerNorm, and attention pooling of the last layer into one vector per sequence.
use candle_core::{Device, Module, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

/// `LayerNorm(word(ids) + position(0..T))`, the BERT-style embedding.
#[derive(Debug, Clone)]
pub struct Embeddings {
    word: Embedding,
    position: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    /// The three tensors under their checkpoint's own prefixes (the crates name them differently).
    pub fn new(
        vocab_size: usize,
        max_positions: usize,
        hidden: usize,
        eps: f64,
        word: VarBuilder,
        position: VarBuilder,
        norm: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Embeddings {
            word: embedding(vocab_size, hidden, word)?,
            position: embedding(max_positions, hidden, position)?,
            norm: layer_norm(hidden, eps, norm)?,
        })
    }

    /// `ids [B, T]` (already checked against the vocabulary and positions) -> `[B, T, hidden]`.
    pub fn forward(&self, ids: &[Vec<u32>], device: &Device) -> candle_core::Result<Tensor> {
        let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (b, t), device)?;
        let positions = Tensor::arange(0u32, t as u32, device)?;
        let x = self
            .word
            .forward(&ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        self.norm.forward(&x)
    }
}

/// Attention pooling: `α = exp(fc2(tanh(fc1(x)))) ⊙ mask`, `α / (Σα + 1e-8)`, `Σ_t α_t x_t`.
#[derive(Debug, Clone)]
pub struct AttentionPooling {
    att_fc1: Linear,
    att_fc2: Linear,
}

impl AttentionPooling {
    pub fn new(d: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(AttentionPooling {
            att_fc1: linear(d, d, vb.pp("att_fc1"))?,
            att_fc2: linear(d, 1, vb.pp("att_fc2"))?,
        })
    }

    /// `x` `[B, T, D]`, `mask` `[B, T]` (1 token, 0 padding) -> `[B, D]`.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let alpha = self
            .att_fc2
            .forward(&self.att_fc1.forward(x)?.tanh()?)?
            .exp()?;
        let alpha = alpha.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?;
        let alpha = alpha.broadcast_div(&(alpha.sum_keepdim(1)? + 1e-8)?)?;
        x.broadcast_mul(&alpha)?.sum(1)
    }
}

/// The real-token mask of `ids` as f32 `[B, T]` (1 token, 0 padding); a sequence of padding only
/// is an error (see [`crate::tokens::padding_mask`]).
pub fn padding_mask(ids: &[Vec<u32>], pad_token_id: u32, device: &Device) -> crate::Result<Tensor> {
    let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
    let mask: Vec<f32> = crate::tokens::padding_mask(ids, pad_token_id)?
        .into_iter()
        .map(f32::from)
        .collect();
    Ok(Tensor::from_vec(mask, (b, t), device)?)
}
