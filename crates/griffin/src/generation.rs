//! Greedy decoding with the model's state: the prompt is prefilled in parallel, then one token per
//! step from the cached state.
use candle_core::{IndexOp, Tensor};

use crate::error::Result;
use crate::model::Model;

/// The prompt's logits `[1, T, V]`, and `max_new_tokens` greedy tokens.
pub fn greedy(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Tensor, Vec<u32>)> {
    // On one pool thread throughout (layers::generation::generate says why).
    layers::pool::on_pool(|| greedy_here(model, prompt, max_new_tokens))
}

fn greedy_here(model: &Model, prompt: &[u32], max_new_tokens: usize) -> Result<(Tensor, Vec<u32>)> {
    if prompt.len().saturating_add(max_new_tokens) > crate::model::MAX_POSITIONS {
        return Err(layers::Error::TooLarge {
            what: "prompt + max_new_tokens".into(),
            requested: format!("{} + {max_new_tokens} positions", prompt.len()),
            limit: format!(
                "{} positions, exact for RoPE in f32",
                crate::model::MAX_POSITIONS
            ),
        });
    }
    let mut state = model.new_state(1)?;
    let logits = model.forward(&[prompt], &mut state)?;
    let mut next = argmax_last(&logits)?;
    let mut tokens = Vec::new();
    for i in 0..max_new_tokens {
        tokens.push(next);
        if i + 1 < max_new_tokens {
            let step = model.forward_last(&[[next]], &mut state)?;
            next = argmax_last(&step.unsqueeze(1)?)?;
        }
    }
    Ok((logits, tokens))
}

/// The arg-max of the last position's logits (first index on ties, as torch.argmax).
pub fn argmax_last(logits: &Tensor) -> Result<u32> {
    let t = logits.dim(1)?;
    let last: Vec<f32> = logits.i((0, t - 1))?.to_vec1()?;
    Ok(layers::tokens::argmax(&last) as u32)
}
