//! Fast CPU paths: rows in parallel; the selection keeps the K best with `select_nth_unstable_by`
//! (O(N) per row) and sorts only those.
use rayon::prelude::*;

use super::{rank, SketchTopk, SparseInput};
use crate::error::Result;

pub fn sketch_topk_cpu(sel: &SketchTopk<'_>) -> Result<Vec<i32>> {
    sel.validate()?;
    let (n, k) = (sel.seq_len, sel.keys);
    let mut out = vec![-1i32; sel.batch * sel.heads * n * k];
    out.par_chunks_mut(k)
        .enumerate()
        .for_each_init(Vec::new, |cand, (row, slots)| {
            let (i, h, b) = (row % n, (row / n) % sel.heads, row / (n * sel.heads));
            cand.clear();
            cand.extend((0..n).filter_map(|j| sel.score(b, h, i, j).map(|s| (s, j))));
            if cand.len() > k {
                cand.select_nth_unstable_by(k - 1, rank);
                cand.truncate(k);
            }
            cand.sort_unstable_by(rank);
            for (slot, &(_, j)) in slots.iter_mut().zip(cand.iter()) {
                *slot = j as i32;
            }
        });
    Ok(out)
}

pub fn sparse_attention_cpu(input: &SparseInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (n, h, d, kk) = (s.seq_len, s.heads, s.head_dim, s.keys);
    let mut o = vec![0.0f32; s.elems()];
    // One task per (b, i, head): its output row.
    o.par_chunks_mut(d).enumerate().for_each_init(
        || Vec::with_capacity(kk),
        |scores, (slot, out)| {
            let (head, i, b) = (slot % h, (slot / h) % n, slot / (h * n));
            let at = |t: usize| ((b * n + t) * h + head) * d;
            let q = &input.q[at(i)..at(i) + d];
            let idx = &input.indices[((b * h + head) * n + i) * kk..][..kk];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for &j in idx.iter().filter(|&&j| j >= 0) {
                let k = &input.k[at(j as usize)..at(j as usize) + d];
                let sc = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * input.scale;
                max = max.max(sc);
                scores.push((j as usize, sc));
            }
            if scores.is_empty() {
                return;
            }
            let mut total = 0.0f32;
            for (_, sc) in scores.iter_mut() {
                *sc = (*sc - max).exp();
                total += *sc;
            }
            for &(j, p) in scores.iter() {
                for (acc, &v) in out.iter_mut().zip(&input.v[at(j)..at(j) + d]) {
                    *acc += p * v;
                }
            }
            out.iter_mut().for_each(|x| *x /= total);
        },
    );
    Ok(o)
}
