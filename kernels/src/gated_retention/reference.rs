//! The recurrence itself, one token at a time (and so also YOCO's decode step).
use super::{RetentionInput, RetentionOutput};
use crate::error::Result;

pub fn gated_retention_reference(input: &RetentionInput<'_>) -> Result<RetentionOutput> {
    input.validate()?;
    let s = input.shape;
    let (h, dk, dv) = (s.heads, s.dk, s.dv);
    let mut state = input
        .state
        .map_or_else(|| vec![0.0f32; s.state_len()], <[f32]>::to_vec);
    let mut o = vec![0.0f32; s.batch * s.seq_len * h * dv];
    for b in 0..s.batch {
        for t in 0..s.seq_len {
            for head in 0..h {
                let row = (b * s.seq_len + t) * h + head;
                let decay = input.log_decay[row].exp();
                let (q, k, v) = (
                    &input.q[row * dk..][..dk],
                    &input.k[row * dk..][..dk],
                    &input.v[row * dv..][..dv],
                );
                let st = &mut state[(b * h + head) * dk * dv..][..dk * dv];
                for r in 0..dk {
                    for c in 0..dv {
                        st[r * dv + c] = decay * st[r * dv + c] + k[r] * v[c];
                    }
                }
                for c in 0..dv {
                    o[row * dv + c] = (0..dk).map(|r| q[r] * st[r * dv + c]).sum();
                }
            }
        }
    }
    Ok(RetentionOutput { o, state })
}
