//! Checking a batch of token ids before a model sees them, and picking the greedy token: what
//! every model crate shares.
use crate::error::{Error, Result};

/// `(batch, length)` of equally long, non-empty sequences of ids below `vocab_size`, at most
/// `max_len` (a limit and the key that sets it) long; otherwise an error saying which rule the
/// input breaks, naming the sequence and the id.
pub fn check_batch<S: AsRef<[u32]>>(
    ids: &[S],
    vocab_size: usize,
    max_len: Option<(usize, &str)>,
) -> Result<(usize, usize)> {
    let input = |m: String| Err(Error::Input(m));
    let Some(first) = ids.first() else {
        return input("empty input: no sequences".into());
    };
    let n = first.as_ref().len();
    if n == 0 {
        return input("empty input: no tokens".into());
    }
    for (s, seq) in ids.iter().enumerate() {
        let seq = seq.as_ref();
        if seq.len() != n {
            return input(format!(
                "sequence {s} has {} tokens, sequence 0 has {n}: every sequence must have one \
                 length (pad them)",
                seq.len()
            ));
        }
        if let Some(&bad) = seq.iter().find(|&&id| id as usize >= vocab_size) {
            return input(format!(
                "token id {bad} in sequence {s} is out of range (vocab_size {vocab_size})"
            ));
        }
    }
    if let Some((limit, key)) = max_len {
        if n > limit {
            return input(format!("sequence length {n} is past {key} {limit}"));
        }
    }
    Ok((ids.len(), n))
}

/// Per token of `ids` (flattened), 1 for a real token and 0 for `pad_token_id`. A sequence that
/// is all padding is an error: an encoder's pooled vector over no token is undefined.
pub fn padding_mask<S: AsRef<[u32]>>(ids: &[S], pad_token_id: u32) -> Result<Vec<u8>> {
    let mut mask = Vec::new();
    for (s, seq) in ids.iter().enumerate() {
        let row: Vec<u8> = seq
            .as_ref()
            .iter()
            .map(|&id| u8::from(id != pad_token_id))
            .collect();
        if row.iter().all(|&t| t == 0) {
            return Err(Error::Input(format!(
                "sequence {s} is all padding (pad_token_id {pad_token_id}): there is no token to \
                 classify"
            )));
        }
        mask.extend(row);
    }
    Ok(mask)
}

/// The index of the largest value, the first on ties (as `torch.argmax`); 0 for an empty slice.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
