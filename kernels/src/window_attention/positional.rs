//! Sliding-window attention where every key carries its own position: the keys of a ring buffer
//! (slot order is not position order) followed by a new block's, or the rows of a padded batch
//! (each sequence at its own positions). Query `i` of sequence `b` at position `q_pos[b, i]` sees
//! key `j` iff `0 ≤ q_pos − k_pos[b, j] < window`; a key at position −1 is an empty slot, a query
//! at −1 is padding (its output is zeros). Griffin's local attention runs on this.
//!
//! Layout as [`super::WindowInput`]: `q, o [batch, q_len, heads, head_dim]`,
//! `k, v [batch, k_len, kv_heads, head_dim]`; `q_pos [batch, q_len]`, `k_pos [batch, k_len]`.
use rayon::prelude::*;

use super::PARALLEL_MIN_MACS;
use crate::cpu::{dot, fma_available};
use crate::cpu_math::{exp, simd};
use crate::error::{KernelError, Result};

#[derive(Debug, Clone, Copy)]
pub struct PositionalInput<'a> {
    pub batch: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Keys a query sees, itself included.
    pub window: usize,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub q_pos: &'a [i64],
    pub k_pos: &'a [i64],
    /// Multiplies the scores (usually `head_dim^-0.5`).
    pub scale: f32,
}

impl PositionalInput<'_> {
    pub fn validate(&self) -> Result<()> {
        self.validate_shape()?;
        let (b, h, hk, d) = (self.batch, self.heads, self.kv_heads, self.head_dim);
        for (arg, len, want) in [
            ("q", self.q.len(), b * self.q_len * h * d),
            ("k", self.k.len(), b * self.k_len * hk * d),
            ("v", self.v.len(), b * self.k_len * hk * d),
        ] {
            if len != want {
                return Err(KernelError::Invalid {
                    kernel: "positional_attention",
                    arg,
                    message: format!("has {len} elements, expected {want}"),
                });
            }
        }
        Ok(())
    }

    /// The checks that need no data: positive sizes, grouped heads, one position per query and
    /// key.
    pub fn validate_shape(&self) -> Result<()> {
        let bad = |arg: &'static str, message: String| {
            Err(KernelError::Invalid {
                kernel: "positional_attention",
                arg,
                message,
            })
        };
        let (b, h, hk, d) = (self.batch, self.heads, self.kv_heads, self.head_dim);
        if b == 0 || self.q_len == 0 || h == 0 || d == 0 || self.window == 0 {
            return bad(
                "shape",
                "batch, q_len, heads, head_dim and window must be positive".into(),
            );
        }
        if hk == 0 || h % hk != 0 {
            return bad("kv_heads", format!("{hk} does not divide heads {h}"));
        }
        for (arg, len, want) in [
            ("q_pos", self.q_pos.len(), b * self.q_len),
            ("k_pos", self.k_pos.len(), b * self.k_len),
        ] {
            if len != want {
                return bad(arg, format!("has {len} elements, expected {want}"));
            }
        }
        Ok(())
    }

    fn visible(&self, q_pos: i64, k_pos: i64) -> bool {
        q_pos >= 0 && k_pos >= 0 && k_pos <= q_pos && q_pos - k_pos < self.window as i64
    }
}

/// The reference: scores of the visible keys, then their softmax, in f64.
pub fn positional_attention_reference(input: &PositionalInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let (h, hk, d) = (input.heads, input.kv_heads, input.head_dim);
    let mut o = vec![0.0f32; input.q.len()];
    for b in 0..input.batch {
        for i in 0..input.q_len {
            let qp = input.q_pos[b * input.q_len + i];
            for head in 0..h {
                let q = &input.q[((b * input.q_len + i) * h + head) * d..][..d];
                let kh = head / (h / hk);
                let seen: Vec<(usize, f64)> = (0..input.k_len)
                    .filter(|&j| input.visible(qp, input.k_pos[b * input.k_len + j]))
                    .map(|j| {
                        let k = &input.k[((b * input.k_len + j) * hk + kh) * d..][..d];
                        let s: f64 = q.iter().zip(k).map(|(&a, &c)| a as f64 * c as f64).sum();
                        (j, s * input.scale as f64)
                    })
                    .collect();
                let max = seen
                    .iter()
                    .map(|&(_, s)| s)
                    .fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = seen.iter().map(|&(_, s)| (s - max).exp()).sum();
                let out = &mut o[((b * input.q_len + i) * h + head) * d..][..d];
                for &(j, s) in &seen {
                    let p = (s - max).exp() / total;
                    let v = &input.v[((b * input.k_len + j) * hk + kh) * d..][..d];
                    for (o, &v) in out.iter_mut().zip(v) {
                        *o += (p * v as f64) as f32;
                    }
                }
            }
        }
    }
    Ok(o)
}

/// The fast path. Prefill on x86-64 with AVX2 and FMA (at least a tile of queries): each
/// sequence's keys sorted by position, so that every query's visible keys are one contiguous run
/// (positions in `(q_pos − window, q_pos]`), then the register-blocked tiles of the window
/// attention over those runs. Otherwise per (query, head): the scores of the visible keys into a buffer, their softmax
/// with a vectorised `exp`, then the weighted sum of values; threaded over (query, head) when the
/// call is large enough to pay for it.
pub fn positional_attention_cpu(input: &PositionalInput<'_>) -> Result<Vec<f32>> {
    input.validate()?;
    let (h, hk, d) = (input.heads, input.kv_heads, input.head_dim);
    let group = h / hk;
    let fma = fma_available();
    let mut o = vec![0.0f32; input.q.len()];
    #[cfg(target_arch = "x86_64")]
    if fma && input.q_len >= super::tiled::ROW_TILE {
        prefill_sorted(input, &mut o);
        return Ok(o);
    }
    // Per thread: the scores and the offsets of the visible keys' rows.
    let task = |(scores, at): &mut (Vec<f32>, Vec<usize>), (slot, acc): (usize, &mut [f32])| {
        let (row, head) = (slot / h, slot % h);
        let b = row / input.q_len;
        let qp = input.q_pos[row];
        let q = &input.q[slot * d..][..d];
        scores.clear();
        at.clear();
        for j in 0..input.k_len {
            if input.visible(qp, input.k_pos[b * input.k_len + j]) {
                let off = ((b * input.k_len + j) * hk + head / group) * d;
                scores.push(dot(fma, q, &input.k[off..off + d]) * input.scale);
                at.push(off);
            }
        }
        if scores.is_empty() {
            return; // padding: zeros
        }
        simd(
            #[inline(always)]
            || {
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut total = 0.0f32;
                for s in scores.iter_mut() {
                    *s = exp(*s - max);
                    total += *s;
                }
                let inv = 1.0 / total;
                for (&p, &off) in scores.iter().zip(at.iter()) {
                    let p = p * inv;
                    for (a, &v) in acc.iter_mut().zip(&input.v[off..off + d]) {
                        *a += p * v;
                    }
                }
            },
        );
    };
    let buffers = || {
        (
            Vec::with_capacity(input.window.min(input.k_len)),
            Vec::new(),
        )
    };
    if o.len() * input.k_len.min(input.window) >= PARALLEL_MIN_MACS {
        o.par_chunks_mut(d).enumerate().for_each_init(buffers, task);
    } else {
        let mut buf = buffers();
        o.chunks_mut(d)
            .enumerate()
            .for_each(|item| task(&mut buf, item));
    }
    Ok(o)
}

/// The prefill path: per sequence, its live keys (position ≥ 0) gathered in position order
/// (stable, so equal positions keep their order), each query's visible run found by binary
/// search, then tiles of `tiled::ROW_TILE` queries, threaded when the call is large enough.
#[cfg(target_arch = "x86_64")]
fn prefill_sorted(input: &PositionalInput<'_>, o: &mut [f32]) {
    use super::tiled::{attend_tile, for_each_tile, Tile, ROW_TILE};
    let (h, hk, d) = (input.heads, input.kv_heads, input.head_dim);
    let (row, kv_row) = (h * d, hk * d);
    let w = input.window as i64;
    struct Sorted {
        k: Vec<f32>,
        v: Vec<f32>,
        visible: Vec<Option<(usize, usize)>>,
    }
    let sorted: Vec<Sorted> = (0..input.batch)
        .map(|b| {
            let pos = &input.k_pos[b * input.k_len..][..input.k_len];
            let mut order: Vec<usize> = (0..input.k_len).filter(|&j| pos[j] >= 0).collect();
            order.sort_by_key(|&j| pos[j]);
            let gather = |src: &[f32]| -> Vec<f32> {
                let src = &src[b * input.k_len * kv_row..][..input.k_len * kv_row];
                order
                    .iter()
                    .flat_map(|&j| &src[j * kv_row..(j + 1) * kv_row])
                    .copied()
                    .collect()
            };
            let sorted_pos: Vec<i64> = order.iter().map(|&j| pos[j]).collect();
            let visible = input.q_pos[b * input.q_len..][..input.q_len]
                .iter()
                .map(|&qp| {
                    // Keys at positions qp − window + 1 ..= qp.
                    let lo = sorted_pos.partition_point(|&kp| kp <= qp.saturating_sub(w));
                    let end = sorted_pos.partition_point(|&kp| kp <= qp);
                    (qp >= 0 && lo < end).then(|| (lo, end - 1))
                })
                .collect();
            Sorted {
                k: gather(input.k),
                v: gather(input.v),
                visible,
            }
        })
        .collect();
    let tile = |(b, (t, out)): (usize, (usize, &mut [f32]))| {
        let s = &sorted[b];
        let first = t * ROW_TILE;
        let rows = out.len() / row;
        let tile = Tile {
            q: &input.q[(b * input.q_len + first) * row..][..rows * row],
            k: &s.k,
            v: &s.v,
            heads: h,
            kv_heads: hk,
            head_dim: d,
            scale: input.scale,
            visible: &s.visible[first..first + rows],
        };
        // SAFETY: the caller checked AVX2 and FMA; the ranges index the gathered keys.
        unsafe { attend_tile(&tile, out) }
    };
    let seen: usize = sorted
        .iter()
        .flat_map(|s| s.visible.iter().flatten())
        .map(|&(lo, hi)| hi + 1 - lo)
        .sum();
    for_each_tile(
        o,
        input.q_len * row,
        row,
        seen * row >= PARALLEL_MIN_MACS,
        tile,
    );
}
