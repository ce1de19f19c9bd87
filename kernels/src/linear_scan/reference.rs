//! The plain CPU reference: one loop over batch, time and channel, as the equation reads.
use super::{ScanElement, ScanInput, ScanOutput};
use crate::error::Result;

/// `h_t = a_t * h_{t-1} + x_t`, with `h_{-1} = h0` (or 0) and `h_{t-1}` taken as 0 where
/// `reset[t]` is set.
pub fn linear_scan_reference<T: ScanElement>(input: &ScanInput<'_, T>) -> Result<ScanOutput<T>> {
    input.validate()?;
    let s = input.shape;
    let mut h = Vec::with_capacity(s.len());
    let mut h_last = vec![0.0f32; s.state_len()];
    for b in 0..s.batch {
        for c in 0..s.channels {
            h_last[b * s.channels + c] = input.h0.map_or(0.0, |h0| h0[b * s.channels + c]);
        }
        for t in 0..s.seq_len {
            let restart = input.reset.is_some_and(|r| r[b * s.seq_len + t] != 0);
            for c in 0..s.channels {
                let i = (b * s.seq_len + t) * s.channels + c;
                let prev = if restart {
                    0.0
                } else {
                    h_last[b * s.channels + c]
                };
                let next = input.a[i].to_f32() * prev + input.x[i].to_f32();
                h_last[b * s.channels + c] = next;
                h.push(T::from_f32(next));
            }
        }
    }
    Ok(ScanOutput { h, h_last })
}
