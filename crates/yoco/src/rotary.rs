//! RoPE as the reference applies it (docs/yoco.md §1): interleaved pairs `(2i, 2i+1)` and the
//! non-standard frequencies `1 / θ^linspace(0, 1, d/2)` (the endpoint 1 included, not the usual
//! `arange(0, d, 2)/d`), angles `position · frequency` in f32.
use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// The frequencies of a head of size `head_dim`.
pub fn frequencies(head_dim: usize, theta: f64) -> Vec<f32> {
    let half = head_dim / 2;
    (0..half)
        .map(|i| {
            // torch.linspace(0, 1, n) in f32: i / (n − 1), the last one exactly 1.
            let x = if half == 1 {
                0.0
            } else {
                i as f32 / (half - 1) as f32
            };
            1.0 / (theta as f32).powf(x)
        })
        .collect()
}

/// cos and sin `[len, head_dim / 2]` at positions `start..start + len` (angles
/// `position · frequency` in f32, as the reference).
pub fn tables(
    len: usize,
    start: usize,
    freqs: &[f32],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut cos = Vec::with_capacity(len * freqs.len());
    let mut sin = Vec::with_capacity(len * freqs.len());
    for t in 0..len {
        let pos = (start + t) as f32;
        for &f in freqs {
            let (s, c) = (pos * f).sin_cos();
            cos.push(c);
            sin.push(s);
        }
    }
    let shape = (len, freqs.len());
    Ok((
        Tensor::from_vec(cos, shape, device)?,
        Tensor::from_vec(sin, shape, device)?,
    ))
}

/// Rotates the interleaved pairs of `x [batch, len, heads, head_dim]` by the tables of
/// [`tables`] (candle-nn's `rope_i`, which takes heads before time).
pub fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let xh = x.to_dtype(DType::F32)?.transpose(1, 2)?.contiguous()?;
    let r = candle_nn::rotary_emb::rope_i(&xh, cos, sin)?;
    Ok(r.transpose(1, 2)?.contiguous()?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The tensor form against the reference's loop: pairs (2i, 2i+1) rotated by pos · f_i.
    #[test]
    fn rotate_matches_the_interleaved_loop() {
        let (b, t, h, d, start) = (2, 3, 2, 6, 5);
        let freqs = frequencies(d, 10000.0);
        let x: Vec<f32> = (0..b * t * h * d)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let dev = Device::Cpu;
        let xt = Tensor::from_vec(x.clone(), (b, t, h, d), &dev).unwrap();
        let (cos, sin) = tables(t, start, &freqs, &dev).unwrap();
        let got: Vec<f32> = rotate(&xt, &cos, &sin)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (r, token) in x.chunks_exact(h * d).enumerate() {
            let pos = (start + r % t) as f32;
            for (hi, head) in token.chunks_exact(d).enumerate() {
                for (i, (pair, &f)) in head.chunks_exact(2).zip(&freqs).enumerate() {
                    let (sn, cs) = (pos * f).sin_cos();
                    let at = r * h * d + hi * d + 2 * i;
                    assert!((got[at] - (pair[0] * cs - pair[1] * sn)).abs() < 1e-6);
                    assert!((got[at + 1] - (pair[0] * sn + pair[1] * cs)).abs() < 1e-6);
                }
            }
        }
    }
}
