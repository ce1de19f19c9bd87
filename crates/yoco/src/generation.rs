//! Greedy decoding as the reference's `generate`: prefill all but the last prompt token with the
//! cross-decoder skipped, then one token per step through every layer.
use candle_core::{IndexOp, Tensor};

use crate::error::Result;
use crate::model::Model;

/// Tokens per early-exit prefill chunk (the reference uses 32768).
pub const PREFILL_CHUNK: usize = 32_768;

/// `max_new_tokens` greedy tokens after `prompt`, and the logits that chose each `[n, vocab]`.
pub fn greedy(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Vec<u32>, Tensor)> {
    // On one pool thread throughout (layers::generation::generate says why).
    layers::pool::on_pool(|| greedy_here(model, prompt, max_new_tokens))
}

fn greedy_here(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Vec<u32>, Tensor)> {
    let capacity = layers::alloc::add("prompt + max_new_tokens", prompt.len(), max_new_tokens)?;
    let mut cache = model.new_cache(1, capacity)?;
    let mut logits = model.prefill(&[prompt], &mut cache, PREFILL_CHUNK)?;
    let mut tokens = Vec::new();
    let mut steps = Vec::new();
    for i in 0..max_new_tokens {
        let next = argmax(&logits.i(0)?)?;
        tokens.push(next);
        steps.push(logits.i(0)?);
        if i + 1 < max_new_tokens {
            logits = model.forward_last(&[[next]], &mut cache)?;
        }
    }
    let steps = if steps.is_empty() {
        Tensor::zeros(
            (0, model.config().vocab_size),
            candle_core::DType::F32,
            logits.device(),
        )?
    } else {
        Tensor::stack(&steps, 0)?
    };
    Ok((tokens, steps))
}

/// The index of the largest value (the first on ties, as torch.argmax).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(layers::tokens::argmax(&logits.to_vec1::<f32>()?) as u32)
}
