//! The fast CPU path: per sequence, score rows in parallel over chunks of t (a dot product per
//! head, vectorised), softmax per head, and the pooled sums as a parallel fold over t chunks.
//! The global query is folded into the key-score weights once (`w_k ⊙ q̄`), so each key row is
//! a plain dot product.
use rayon::prelude::*;

use super::{AdditiveInput, AdditiveOutput, ScoreForm};
use crate::error::Result;

/// Rows per parallel task.
const ROWS: usize = 64;

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: vectorises without reassociation flags.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

struct Scorer<'a> {
    inp: &'a AdditiveInput<'a>,
    /// Per head: the weights a row is dotted with (already times q̄ for the key scores).
    weights: Vec<Vec<f32>>,
    bias: Option<&'a [f32]>,
}

impl Scorer<'_> {
    /// `[seq_len, heads]` exponentials `exp(score − max_h)` of sequence `b`, and `Σ_t` per head.
    fn softmax_numerators(&self, x: &[f32], b: usize) -> (Vec<f32>, Vec<f32>) {
        let s = self.inp.shape;
        let (hidden, heads, d) = (s.hidden(), s.heads, s.head_dim);
        let scale = 1.0 / (d as f32).sqrt();
        let mut scores = vec![0.0f32; s.seq_len * heads];
        scores
            .par_chunks_mut(ROWS * heads)
            .enumerate()
            .for_each(|(c, out)| {
                for (i, row_scores) in out.chunks_mut(heads).enumerate() {
                    let t = c * ROWS + i;
                    let row = &x[(b * s.seq_len + t) * hidden..][..hidden];
                    let pad = self
                        .inp
                        .mask
                        .map_or(0.0, |m| (1.0 - m[b * s.seq_len + t]) * -10000.0);
                    for (h, score) in row_scores.iter_mut().enumerate() {
                        let part = match self.inp.form {
                            ScoreForm::Full => row,
                            ScoreForm::PerHead => &row[h * d..(h + 1) * d],
                        };
                        *score = (dot(part, &self.weights[h]) + self.bias.map_or(0.0, |bb| bb[h]))
                            * scale
                            + pad;
                    }
                }
            });
        let mut max = vec![f32::NEG_INFINITY; heads];
        for row in scores.chunks(heads) {
            for (m, &v) in max.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
        let mut sums = vec![0.0f32; heads];
        for row in scores.chunks_mut(heads) {
            for ((v, m), z) in row.iter_mut().zip(&max).zip(sums.iter_mut()) {
                *v = (*v - m).exp();
                *z += *v;
            }
        }
        (scores, sums)
    }
}

/// `Σ_t e[t, h(j)] · x[t, j] / z[h(j)]` for sequence `b`: `[hidden]`.
fn pool(inp: &AdditiveInput<'_>, x: &[f32], e: &[f32], z: &[f32], b: usize) -> Vec<f32> {
    let s = inp.shape;
    let (hidden, heads, d) = (s.hidden(), s.heads, s.head_dim);
    let rows: Vec<usize> = (0..s.seq_len).step_by(ROWS).collect();
    let acc = rows
        .par_iter()
        .map(|&t0| {
            let mut acc = vec![0.0f32; hidden];
            for t in t0..(t0 + ROWS).min(s.seq_len) {
                let row = &x[(b * s.seq_len + t) * hidden..][..hidden];
                for h in 0..heads {
                    let w = e[t * heads + h];
                    for (a, &v) in acc[h * d..(h + 1) * d]
                        .iter_mut()
                        .zip(&row[h * d..(h + 1) * d])
                    {
                        *a += w * v;
                    }
                }
            }
            acc
        })
        .reduce(
            || vec![0.0f32; hidden],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    acc.iter().enumerate().map(|(j, a)| a / z[j / d]).collect()
}

/// Same contract as [`super::additive_attention_reference`]; equal up to f32 summation order.
pub fn additive_attention_cpu(inp: &AdditiveInput<'_>) -> Result<AdditiveOutput> {
    inp.validate()?;
    let s = inp.shape;
    let (hidden, heads, d) = (s.hidden(), s.heads, s.head_dim);
    let width = inp.score_width();
    let mut u = vec![0.0f32; s.len()];
    let mut pooled_q = Vec::with_capacity(s.batch * hidden);
    let mut pooled_k = Vec::with_capacity(s.batch * hidden);
    for b in 0..s.batch {
        let query = Scorer {
            inp,
            weights: inp.wq.chunks(width).map(<[f32]>::to_vec).collect(),
            bias: inp.bq,
        };
        let (e, z) = query.softmax_numerators(inp.q, b);
        let gq = pool(inp, inp.q, &e, &z, b);
        // p_t = k_t ⊙ q̄, so w_k·p_t = (w_k ⊙ q̄)·k_t.
        let key_weights = (0..heads)
            .map(|h| {
                let w = &inp.wk[h * width..(h + 1) * width];
                let g = match inp.form {
                    ScoreForm::Full => &gq[..],
                    ScoreForm::PerHead => &gq[h * d..(h + 1) * d],
                };
                w.iter().zip(g).map(|(a, b)| a * b).collect()
            })
            .collect();
        let key = Scorer {
            inp,
            weights: key_weights,
            bias: inp.bk,
        };
        let (e, z) = key.softmax_numerators(inp.k, b);
        let gk: Vec<f32> = pool(inp, inp.k, &e, &z, b)
            .iter()
            .zip(&gq)
            .map(|(a, g)| a * g)
            .collect();
        u[b * s.seq_len * hidden..(b + 1) * s.seq_len * hidden]
            .par_chunks_mut(hidden)
            .zip(inp.v[b * s.seq_len * hidden..(b + 1) * s.seq_len * hidden].par_chunks(hidden))
            .for_each(|(out, v)| {
                out.iter_mut()
                    .zip(v)
                    .zip(&gk)
                    .for_each(|((o, v), g)| *o = g * v)
            });
        pooled_q.extend_from_slice(&gq);
        pooled_k.extend(gk);
    }
    Ok(AdditiveOutput {
        u,
        pooled_q,
        pooled_k,
    })
}
