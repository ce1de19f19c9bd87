//! The plain reference: per query, the scores of its visible keys, a max-subtracted softmax and
//! the weighted sum, accumulated in f64.
use super::WindowInput;
use crate::error::Result;

pub fn window_attention_reference(input: &WindowInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (h, hk, d) = (s.heads, s.kv_heads, s.head_dim);
    let group = h / hk;
    let mut o = vec![0.0f32; s.q_elems()];
    for b in 0..s.batch {
        for i in 0..s.q_len {
            let (lo, hi) = s.visible(i);
            for head in 0..h {
                let q = &input.q[((b * s.q_len + i) * h + head) * d..][..d];
                let kv = |j: usize| ((b * s.k_len + j) * hk + head / group) * d;
                let scores: Vec<f64> = (lo..=hi)
                    .map(|j| {
                        let k = &input.k[kv(j)..][..d];
                        q.iter()
                            .zip(k)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum::<f64>()
                            * f64::from(input.scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let out = &mut o[((b * s.q_len + i) * h + head) * d..][..d];
                for (c, slot) in out.iter_mut().enumerate() {
                    let sum: f64 = (lo..=hi)
                        .zip(&weights)
                        .map(|(j, w)| w * f64::from(input.v[kv(j) + c]))
                        .sum();
                    *slot = (sum / total) as f32;
                }
            }
        }
    }
    Ok(o)
}
