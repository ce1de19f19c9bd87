//! Plain references: a full sort per row for the selection, f64 sums for the attention.
use super::{rank, SketchTopk, SparseInput};
use crate::error::Result;

pub fn sketch_topk_reference(sel: &SketchTopk<'_>) -> Result<Vec<i32>> {
    sel.validate()?;
    let (n, k) = (sel.seq_len, sel.keys);
    let mut out = vec![-1i32; sel.batch * sel.heads * n * k];
    for b in 0..sel.batch {
        for h in 0..sel.heads {
            for i in 0..n {
                let mut c: Vec<(f32, usize)> = (0..n)
                    .filter_map(|j| sel.score(b, h, i, j).map(|s| (s, j)))
                    .collect();
                c.sort_by(rank);
                let row = &mut out[((b * sel.heads + h) * n + i) * k..][..k];
                for (slot, &(_, j)) in row.iter_mut().zip(&c) {
                    *slot = j as i32;
                }
            }
        }
    }
    Ok(out)
}

pub fn sparse_attention_reference(input: &SparseInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (n, h, d, kk) = (s.seq_len, s.heads, s.head_dim, s.keys);
    let mut o = vec![0.0f32; s.elems()];
    for b in 0..s.batch {
        for head in 0..h {
            for i in 0..n {
                let at = |t: usize| ((b * n + t) * h + head) * d;
                let q = &input.q[at(i)..at(i) + d];
                let slots: Vec<usize> = input.indices[((b * h + head) * n + i) * kk..][..kk]
                    .iter()
                    .filter(|&&j| j >= 0)
                    .map(|&j| j as usize)
                    .collect();
                if slots.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = slots
                    .iter()
                    .map(|&j| {
                        q.iter()
                            .zip(&input.k[at(j)..at(j) + d])
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum::<f64>()
                            * f64::from(input.scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = w.iter().sum();
                for c in 0..d {
                    let sum: f64 = slots
                        .iter()
                        .zip(&w)
                        .map(|(&j, wj)| wj * f64::from(input.v[at(j) + c]))
                        .sum();
                    o[at(i) + c] = (sum / total) as f32;
                }
            }
        }
    }
    Ok(o)
}
