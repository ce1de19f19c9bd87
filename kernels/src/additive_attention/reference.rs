//! The plain CPU reference: the equations, one loop each.
// Index loops on purpose: the reference reads as the equations, subscripts and all.
#![allow(clippy::needless_range_loop)]
use super::{AdditiveInput, AdditiveOutput, ScoreForm};
use crate::error::Result;

/// Scores of one sequence for one head's weights: `(w·(x_t ⊙ g) + b)/sqrt(d) + mask_t`.
fn scores(
    inp: &AdditiveInput<'_>,
    x: &[f32],
    g: Option<&[f32]>,
    w: &[f32],
    bias: Option<&[f32]>,
    b: usize,
    h: usize,
) -> Vec<f32> {
    let s = inp.shape;
    let hidden = s.hidden();
    let (j0, j1) = match inp.form {
        ScoreForm::Full => (0, hidden),
        ScoreForm::PerHead => (h * s.head_dim, (h + 1) * s.head_dim),
    };
    let width = inp.score_width();
    (0..s.seq_len)
        .map(|t| {
            let row = &x[(b * s.seq_len + t) * hidden..][..hidden];
            let mut acc = 0.0f32;
            for j in j0..j1 {
                acc += row[j] * g.map_or(1.0, |g| g[j]) * w[h * width + (j - j0)];
            }
            let mut score = (acc + bias.map_or(0.0, |b| b[h])) / (s.head_dim as f32).sqrt();
            if let Some(m) = inp.mask {
                score += (1.0 - m[b * s.seq_len + t]) * -10000.0;
            }
            score
        })
        .collect()
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

pub fn additive_attention_reference(inp: &AdditiveInput<'_>) -> Result<AdditiveOutput> {
    inp.validate()?;
    let s = inp.shape;
    let hidden = s.hidden();
    let mut u = vec![0.0f32; s.len()];
    let mut pooled_q = vec![0.0f32; s.batch * hidden];
    let mut pooled_k = vec![0.0f32; s.batch * hidden];
    for b in 0..s.batch {
        let gq = &mut pooled_q[b * hidden..(b + 1) * hidden];
        for h in 0..s.heads {
            let alpha = softmax(&scores(inp, inp.q, None, inp.wq, inp.bq, b, h));
            for j in h * s.head_dim..(h + 1) * s.head_dim {
                gq[j] = (0..s.seq_len)
                    .map(|t| alpha[t] * inp.q[(b * s.seq_len + t) * hidden + j])
                    .sum();
            }
        }
        let gq = gq.to_vec();
        let gk = &mut pooled_k[b * hidden..(b + 1) * hidden];
        for h in 0..s.heads {
            let beta = softmax(&scores(inp, inp.k, Some(&gq), inp.wk, inp.bk, b, h));
            for j in h * s.head_dim..(h + 1) * s.head_dim {
                gk[j] = (0..s.seq_len)
                    .map(|t| beta[t] * inp.k[(b * s.seq_len + t) * hidden + j] * gq[j])
                    .sum();
            }
        }
        for t in 0..s.seq_len {
            for j in 0..hidden {
                let i = (b * s.seq_len + t) * hidden + j;
                u[i] = gk[j] * inp.v[i];
            }
        }
    }
    Ok(AdditiveOutput {
        u,
        pooled_q,
        pooled_k,
    })
}
