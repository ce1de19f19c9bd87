//! Greedy decoding with the KV cache: the prompt in one pass, then one token per step.
use candle_core::{IndexOp, Tensor};

use crate::error::Result;
use crate::model::Model;

/// The prompt's logits `[1, T, V]`, and `max_new_tokens` greedy tokens.
pub fn greedy(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Tensor, Vec<u32>)> {
    // On one pool thread throughout (layers::generation::generate says why).
    layers::pool::on_pool(|| greedy_here(model, prompt, max_new_tokens))
}

fn greedy_here(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Tensor, Vec<u32>)> {
    // The prompt and every new token but the last are cached.
    let capacity = layers::alloc::add("prompt + max_new_tokens", prompt.len(), max_new_tokens)?;
    let capacity = capacity.saturating_sub(1).max(prompt.len()).max(1);
    let mut cache = model.new_cache(1, capacity)?;
    let logits = model.forward(&[prompt], &mut cache)?;
    let t = logits.dim(1)?;
    let mut next = argmax(&logits.i((0, t - 1))?)?;
    let mut tokens = Vec::new();
    for i in 0..max_new_tokens {
        tokens.push(next);
        if i + 1 < max_new_tokens {
            let step = model.forward_last(&[[next]], &mut cache)?;
            next = argmax(&step.i(0)?)?;
        }
    }
    Ok((logits, tokens))
}

/// The index of the largest value (the first on ties, as torch.argmax).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(layers::tokens::argmax(&logits.to_vec1::<f32>()?) as u32)
}
