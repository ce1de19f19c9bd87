//! The chunkwise CPU path, per (batch, head) in parallel. Within a chunk of [`CHUNK`] tokens, with
//! `G` the chunk-local cumulative sum of `g`:
//!
//! ```text
//! o_i = Σ_{j≤i} (q_i·k_j) exp(G_i − G_j) v_j  +  exp(G_i) q_i S        (S: state before the chunk)
//! S  ← exp(G_last) S + Σ_j k_jᵀ exp(G_last − G_j) v_j
//! ```
//!
//! Every exponent is ≤ 0 (decays are ≤ 1), so nothing overflows; the state is touched once per
//! chunk instead of once per token.
use rayon::prelude::*;

use super::{RetentionInput, RetentionOutput};
use crate::error::Result;

/// Tokens per chunk.
pub const CHUNK: usize = 64;

pub fn gated_retention_cpu(input: &RetentionInput<'_>) -> Result<RetentionOutput> {
    input.validate()?;
    let s = input.shape;
    let (h, dk, dv, t_len) = (s.heads, s.dk, s.dv, s.seq_len);
    let mut state = input
        .state
        .map_or_else(|| vec![0.0f32; s.state_len()], <[f32]>::to_vec);
    // Per (batch, head): its outputs [seq_len, dv], gathered afterwards.
    let outs: Vec<Vec<f32>> = state
        .par_chunks_mut(dk * dv)
        .enumerate()
        .map(|(bh, st)| {
            let (b, head) = (bh / h, bh % h);
            let row = |t: usize| (b * t_len + t) * h + head;
            let mut out = vec![0.0f32; t_len * dv];
            let mut g = [0.0f32; CHUNK];
            let mut scores = vec![0.0f32; CHUNK];
            let mut carried = vec![0.0f32; dv];
            for t0 in (0..t_len).step_by(CHUNK) {
                let len = CHUNK.min(t_len - t0);
                let mut run = 0.0f32;
                for (i, gi) in g.iter_mut().enumerate().take(len) {
                    run += input.log_decay[row(t0 + i)];
                    *gi = run;
                }
                for i in 0..len {
                    let q = &input.q[row(t0 + i) * dk..][..dk];
                    // Carried state: exp(G_i) q_i S.
                    carried.iter_mut().for_each(|c| *c = 0.0);
                    for (r, &qr) in q.iter().enumerate() {
                        for (c, &sv) in carried.iter_mut().zip(&st[r * dv..(r + 1) * dv]) {
                            *c += qr * sv;
                        }
                    }
                    let o = &mut out[(t0 + i) * dv..][..dv];
                    let gi = g[i].exp();
                    for (oc, &c) in o.iter_mut().zip(&carried) {
                        *oc = gi * c;
                    }
                    // Intra-chunk: Σ_{j≤i} (q_i·k_j) exp(G_i − G_j) v_j.
                    for j in 0..=i {
                        let k = &input.k[row(t0 + j) * dk..][..dk];
                        scores[j] =
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * (g[i] - g[j]).exp();
                    }
                    for (j, &score) in scores.iter().enumerate().take(i + 1) {
                        let v = &input.v[row(t0 + j) * dv..][..dv];
                        for (oc, &vc) in o.iter_mut().zip(v) {
                            *oc += score * vc;
                        }
                    }
                }
                // Carry: S ← exp(G_last) S + Σ_j k_jᵀ exp(G_last − G_j) v_j.
                let g_last = g[len - 1];
                let keep = g_last.exp();
                st.iter_mut().for_each(|x| *x *= keep);
                for (j, &gj) in g.iter().enumerate().take(len) {
                    let w = (g_last - gj).exp();
                    let k = &input.k[row(t0 + j) * dk..][..dk];
                    let v = &input.v[row(t0 + j) * dv..][..dv];
                    for (r, &kr) in k.iter().enumerate() {
                        let kw = kr * w;
                        for (sv, &vc) in st[r * dv..(r + 1) * dv].iter_mut().zip(v) {
                            *sv += kw * vc;
                        }
                    }
                }
            }
            out
        })
        .collect();
    let mut o = vec![0.0f32; s.batch * t_len * h * dv];
    for (bh, out) in outs.iter().enumerate() {
        let (b, head) = (bh / h, bh % h);
        for t in 0..t_len {
            o[((b * t_len + t) * h + head) * dv..][..dv]
                .copy_from_slice(&out[t * dv..(t + 1) * dv]);
        }
    }
    Ok(RetentionOutput { o, state })
}
