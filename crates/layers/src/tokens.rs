//! Checking a batch of token ids before a model sees them.
use crate::error::{Error, Result};

/// `(batch, length)` of equally long, non-empty sequences of ids below `vocab_size`, at most
/// `max_len` long; otherwise an error saying which rule the input breaks.
pub fn check_batch<S: AsRef<[u32]>>(
    ids: &[S],
    vocab_size: usize,
    max_len: Option<(usize, &str)>,
) -> Result<(usize, usize)> {
    let input = |m: String| Err(Error::Input(m));
    let (b, n) = (ids.len(), ids.first().map_or(0, |s| s.as_ref().len()));
    if b == 0 || n == 0 {
        return input("empty input: no tokens".into());
    }
    if ids.iter().any(|s| s.as_ref().len() != n) {
        return input(format!(
            "every sequence must have one length (the first has {n}): pad them"
        ));
    }
    if let Some((limit, key)) = max_len {
        if n > limit {
            return input(format!("sequence length {n} is past {key} {limit}"));
        }
    }
    for (s, seq) in ids.iter().enumerate() {
        if let Some(&bad) = seq.as_ref().iter().find(|&&id| id as usize >= vocab_size) {
            return input(format!(
                "token id {bad} in sequence {s} is out of range (vocab_size {vocab_size})"
            ));
        }
    }
    Ok((b, n))
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
                "sequence {s} is all padding (pad_token_id {pad_token_id}): there is no token to classify"
            )));
        }
        mask.extend(row);
    }
    Ok(mask)
}
