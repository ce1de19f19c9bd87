//! Token-id checks and picks every model shares.

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

/// `(batch, len)` of a batch of equally long, non-empty sequences of ids below `vocab`; what is
/// wrong otherwise, as a message naming the sequence and the id.
pub fn check_batch<S: AsRef<[u32]>>(tokens: &[S], vocab: usize) -> Result<(usize, usize), String> {
    let Some(first) = tokens.first() else {
        return Err("empty input: no sequences".into());
    };
    let t = first.as_ref().len();
    if t == 0 {
        return Err("empty input: no tokens".into());
    }
    for (i, s) in tokens.iter().enumerate() {
        let s = s.as_ref();
        if s.len() != t {
            return Err(format!(
                "sequence {i} has {} tokens, sequence 0 has {t}: batches need equal lengths",
                s.len()
            ));
        }
        if let Some(&bad) = s.iter().find(|&&id| id as usize >= vocab) {
            return Err(format!(
                "token id {bad} in sequence {i} is out of range (vocab_size {vocab})"
            ));
        }
    }
    Ok((tokens.len(), t))
}
