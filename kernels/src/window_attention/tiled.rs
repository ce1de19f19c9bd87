//! The prefill path on x86-64 with AVX2 and FMA: flash-style tiles, register-blocked.
//!
//! One task per tile of [`ROW_TILE`] query rows. For each KV head, each block of [`KB`] keys is
//! transposed once (dimension-major, `kt[c·KB + t] = k_t[c]`) and then serves every query of the
//! tile that reads that KV head, [`QB`] queries at a time:
//! - scores `[QB × 16]` per step in eight registers: one broadcast query element times two
//!   vectors of the transposed keys, so no horizontal sums;
//! - the online softmax over the block (one max, one eight-lane `exp` pass, at most one rescale
//!   of the running output per query), keys a query does not see weighted 0;
//! - outputs `[QB × 16 dimensions]` per step in eight registers: one broadcast probability times
//!   two vectors of a value row.
//!
//! Keys, values and the transposed block stay in L1 while every query of the tile uses them. On
//! AVX-512 the two products run sixteen lanes wide (32 keys, 32 dimensions a step).
//! Inline assembly is not used: the intrinsics below compile (and are tested) like any Rust.
use std::arch::x86_64::*;

use super::{softmax_block, WindowInput};

/// Query rows per task.
pub(super) const ROW_TILE: usize = 32;
/// Keys per block.
const KB: usize = 64;
/// Queries per micro-tile.
const QB: usize = 4;

/// One tile's inputs: its query rows, the keys and values of their sequence, and for each row
/// the keys it sees as an index range (`None`: none, the row's output stays zero).
pub(super) struct Tile<'a> {
    /// `[rows, heads, head_dim]`.
    pub q: &'a [f32],
    /// `[k_len, kv_heads, head_dim]` each.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Per row: its visible keys `lo..=hi`, every one of them seen.
    pub visible: &'a [Option<(usize, usize)>],
}

/// Runs `tile((b, (t, out)))` for every tile `t` of [`ROW_TILE`] query rows of every sequence `b`
/// of the output `o` (`per_batch` values a sequence, `row` values a query row): on the pool when
/// `parallel`, else in order on this thread.
pub(super) fn for_each_tile(
    o: &mut [f32],
    per_batch: usize,
    row: usize,
    parallel: bool,
    tile: impl Fn((usize, (usize, &mut [f32]))) + Sync + Send,
) {
    use rayon::prelude::*;
    if parallel {
        o.par_chunks_mut(per_batch)
            .enumerate()
            .flat_map(|(b, ob)| {
                ob.par_chunks_mut(ROW_TILE * row)
                    .enumerate()
                    .map(move |t| (b, t))
            })
            .for_each(tile);
    } else {
        for (b, ob) in o.chunks_mut(per_batch).enumerate() {
            ob.chunks_mut(ROW_TILE * row)
                .enumerate()
                .for_each(|t| tile((b, t)));
        }
    }
}

/// Rows `first..` of batch `b` of a window attention (as many as `out` holds, every head).
///
/// # Safety
/// The CPU has AVX2 and FMA, and `input` has been validated (its buffers hold its shape).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn prefill_tile(
    input: &WindowInput<'_>,
    b: usize,
    first: usize,
    out: &mut [f32],
) {
    let s = input.shape;
    let row = s.heads * s.head_dim;
    let rows = out.len() / row;
    let visible: Vec<Option<(usize, usize)>> =
        (first..first + rows).map(|i| Some(s.visible(i))).collect();
    let kv = s.k_len * s.kv_heads * s.head_dim;
    let tile = Tile {
        q: &input.q[(b * s.q_len + first) * row..][..rows * row],
        k: &input.k[b * kv..][..kv],
        v: &input.v[b * kv..][..kv],
        heads: s.heads,
        kv_heads: s.kv_heads,
        head_dim: s.head_dim,
        scale: input.scale,
        visible: &visible,
    };
    // SAFETY: AVX2 and FMA are present (this function's contract); the slices hold the shape.
    unsafe { attend_tile(&tile, out) }
}

/// The attention of one tile's rows into `out` `[rows, heads, head_dim]` (zeroed by the caller).
///
/// # Safety
/// The CPU has AVX2 and FMA; `t.q` and `out` hold `visible.len()` rows of `heads · head_dim`,
/// `t.k` and `t.v` hold every key a range names.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attend_tile(t: &Tile<'_>, out: &mut [f32]) {
    let (h, hk, d) = (t.heads, t.kv_heads, t.head_dim);
    let group = h / hk;
    // Sixteen lanes for the two products where the CPU has AVX-512 (F, BW, VL).
    let wide = crate::cpu_gemm::available();
    let rows = t.visible.len();
    let visible = t.visible;
    let (Some(lo), Some(hi)) = (
        visible.iter().flatten().map(|v| v.0).min(),
        visible.iter().flatten().map(|v| v.1).max(),
    ) else {
        return;
    };
    // Running max and normaliser per (row, head) slot; outputs accumulate in `out`.
    let mut max = vec![f32::NEG_INFINITY; rows * h];
    let mut total = vec![0.0f32; rows * h];
    let mut kt = vec![0.0f32; d * KB];
    // Where a micro-tile short of QB queries writes its unused rows.
    let mut scratch = vec![0.0f32; d];
    let stride = hk * d;
    for kv in 0..hk {
        let slots: Vec<usize> = (0..rows)
            .flat_map(|r| (kv * group..(kv + 1) * group).map(move |head| r * h + head))
            .collect();
        let key_at = |j: usize| (j * hk + kv) * d;
        let mut start = lo;
        while start <= hi {
            let n = (hi + 1 - start).min(KB);
            for j in 0..KB {
                if j < n {
                    let k = &t.k[key_at(start + j)..][..d];
                    for (c, &x) in k.iter().enumerate() {
                        kt[c * KB + j] = x;
                    }
                } else {
                    for c in 0..d {
                        kt[c * KB + j] = 0.0;
                    }
                }
            }
            let values = &t.v[key_at(start)..key_at(start + n - 1) + d];
            for chunk in slots.chunks(QB) {
                let q: [&[f32]; QB] = std::array::from_fn(|i| {
                    let slot = chunk[i.min(chunk.len() - 1)];
                    let (r, head) = (slot / h, slot % h);
                    &t.q[(r * h + head) * d..][..d]
                });
                let mut p = [[0.0f32; KB]; QB];
                // SAFETY: AVX2 and FMA are present (this function's contract), AVX-512 where
                // `wide` says so; `kt` holds d·KB values and every `q` row d.
                unsafe {
                    if wide {
                        scores_avx512(&q, &kt, d, &mut p)
                    } else {
                        scores(&q, &kt, d, &mut p)
                    }
                };
                for (i, &slot) in chunk.iter().enumerate() {
                    let row = &mut p[i];
                    let Some((vlo, vhi)) = visible[slot / h] else {
                        row.fill(0.0);
                        continue;
                    };
                    let from = vlo.saturating_sub(start);
                    let to = vhi.min(start + n - 1);
                    if to < start || from > to - start {
                        row.fill(0.0);
                        continue;
                    }
                    let to = to - start;
                    row[..from].fill(0.0);
                    row[to + 1..].fill(0.0);
                    let seen = &mut row[from..=to];
                    softmax_block(
                        seen,
                        t.scale,
                        &mut max[slot],
                        &mut total[slot],
                        &mut out[slot * d..(slot + 1) * d],
                    );
                }
                let base = out.as_mut_ptr();
                let dst: [*mut f32; QB] = std::array::from_fn(|i| match chunk.get(i) {
                    // SAFETY: slot·d + d ≤ out.len() (slots index the tile's rows and heads).
                    Some(&slot) => unsafe { base.add(slot * d) },
                    None => scratch.as_mut_ptr(),
                });
                // SAFETY: AVX2 and FMA are present, AVX-512 where `wide` says so; `values` holds
                // n rows of d at `stride` (sliced above); every `dst` row holds d floats, and
                // distinct queries of the chunk have distinct slots, so no two rows overlap.
                unsafe {
                    if wide {
                        weighted_values_avx512(&p, values, n, stride, d, dst)
                    } else {
                        weighted_values(&p, values, n, stride, d, dst)
                    }
                };
            }
            start += n;
        }
    }
    for (slot, a) in out.chunks_mut(d).enumerate() {
        if visible[slot / h].is_some() {
            let total = total[slot];
            a.iter_mut().for_each(|x| *x /= total);
        }
    }
}

/// `p[i][t] = q_i · kt[·, t]` for the block's KB keys.
///
/// # Safety
/// AVX2 and FMA are present; `kt.len() ≥ d·KB`; every `q[i].len() ≥ d`.
#[target_feature(enable = "avx2,fma")]
unsafe fn scores(q: &[&[f32]; QB], kt: &[f32], d: usize, p: &mut [[f32; KB]; QB]) {
    // SAFETY: every load reads kt[c·KB + j .. c·KB + j + 16] with c < d and j + 16 ≤ KB, inside
    // kt; every q[i] read is at c < d; every store writes p[i][j .. j + 16] with j + 16 ≤ KB.
    unsafe {
        for j in (0..KB).step_by(16) {
            let mut acc = [[_mm256_setzero_ps(); 2]; QB];
            for c in 0..d {
                let k = kt.as_ptr().add(c * KB + j);
                let (k0, k1) = (_mm256_loadu_ps(k), _mm256_loadu_ps(k.add(8)));
                for (a, q) in acc.iter_mut().zip(q) {
                    let x = _mm256_set1_ps(*q.get_unchecked(c));
                    a[0] = _mm256_fmadd_ps(x, k0, a[0]);
                    a[1] = _mm256_fmadd_ps(x, k1, a[1]);
                }
            }
            for (a, row) in acc.iter().zip(p.iter_mut()) {
                _mm256_storeu_ps(row.as_mut_ptr().add(j), a[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(j + 8), a[1]);
            }
        }
    }
}

/// `dst_i[c] += Σ_t p[i][t] · v_t[c]` for the block's `n` keys, `v_t = values[t·stride ..][..d]`.
///
/// # Safety
/// AVX2 and FMA are present; `values` holds `(n − 1)·stride + d` floats; every `dst[i]` points
/// to `d` writable floats, the rows not overlapping each other or `values`.
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_values(
    p: &[[f32; KB]; QB],
    values: &[f32],
    n: usize,
    stride: usize,
    d: usize,
    dst: [*mut f32; QB],
) {
    // SAFETY: every read of `values` is at t·stride + c + lane with t < n and c + lane < d, inside
    // the slice (the contract); every access to dst[i] is at c + lane < d.
    unsafe {
        let v = values.as_ptr();
        let mut c = 0;
        while c + 16 <= d {
            let mut acc = [[_mm256_setzero_ps(); 2]; QB];
            for (a, &row) in acc.iter_mut().zip(&dst) {
                a[0] = _mm256_loadu_ps(row.add(c));
                a[1] = _mm256_loadu_ps(row.add(c + 8));
            }
            for t in 0..n {
                let vt = v.add(t * stride + c);
                let (v0, v1) = (_mm256_loadu_ps(vt), _mm256_loadu_ps(vt.add(8)));
                for (a, pi) in acc.iter_mut().zip(p) {
                    let x = _mm256_set1_ps(*pi.get_unchecked(t));
                    a[0] = _mm256_fmadd_ps(x, v0, a[0]);
                    a[1] = _mm256_fmadd_ps(x, v1, a[1]);
                }
            }
            for (a, &row) in acc.iter().zip(&dst) {
                _mm256_storeu_ps(row.add(c), a[0]);
                _mm256_storeu_ps(row.add(c + 8), a[1]);
            }
            c += 16;
        }
        // The last d mod 16 dimensions, one at a time.
        while c < d {
            for (&row, pi) in dst.iter().zip(p) {
                let mut a = *row.add(c);
                for (t, &weight) in pi[..n].iter().enumerate() {
                    a += weight * *v.add(t * stride + c);
                }
                *row.add(c) = a;
            }
            c += 1;
        }
    }
}

/// [`scores`] sixteen lanes wide: 32 keys per step.
///
/// # Safety
/// AVX-512 F is present; `kt.len() ≥ d·KB`; every `q[i].len() ≥ d`.
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(q: &[&[f32]; QB], kt: &[f32], d: usize, p: &mut [[f32; KB]; QB]) {
    // SAFETY: every load reads kt[c·KB + j .. c·KB + j + 32] with c < d and j + 32 ≤ KB, inside
    // kt; every q[i] read is at c < d; every store writes p[i][j .. j + 32] with j + 32 ≤ KB.
    unsafe {
        for j in (0..KB).step_by(32) {
            let mut acc = [[_mm512_setzero_ps(); 2]; QB];
            for c in 0..d {
                let k = kt.as_ptr().add(c * KB + j);
                let (k0, k1) = (_mm512_loadu_ps(k), _mm512_loadu_ps(k.add(16)));
                for (a, q) in acc.iter_mut().zip(q) {
                    let x = _mm512_set1_ps(*q.get_unchecked(c));
                    a[0] = _mm512_fmadd_ps(x, k0, a[0]);
                    a[1] = _mm512_fmadd_ps(x, k1, a[1]);
                }
            }
            for (a, row) in acc.iter().zip(p.iter_mut()) {
                _mm512_storeu_ps(row.as_mut_ptr().add(j), a[0]);
                _mm512_storeu_ps(row.as_mut_ptr().add(j + 16), a[1]);
            }
        }
    }
}

/// [`weighted_values`] sixteen lanes wide: 32 dimensions per pass, the last pass masked to the
/// dimensions left.
///
/// # Safety
/// As [`weighted_values`], with AVX-512 F (and BW for the masks) present.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn weighted_values_avx512(
    p: &[[f32; KB]; QB],
    values: &[f32],
    n: usize,
    stride: usize,
    d: usize,
    dst: [*mut f32; QB],
) {
    // SAFETY: every lane read of `values` is at t·stride + c + lane with t < n and c + lane < d
    // (the masks), inside the slice (the contract); every lane of dst[i] at c + lane < d.
    unsafe {
        let v = values.as_ptr();
        for c in (0..d).step_by(32) {
            let lanes = |from: usize| crate::cpu::lane_mask(d.saturating_sub(c + from));
            let (m0, m1) = (lanes(0), lanes(16));
            let mut acc = [[_mm512_setzero_ps(); 2]; QB];
            for (a, &row) in acc.iter_mut().zip(&dst) {
                a[0] = _mm512_maskz_loadu_ps(m0, row.wrapping_add(c));
                a[1] = _mm512_maskz_loadu_ps(m1, row.wrapping_add(c + 16));
            }
            for t in 0..n {
                let vt = v.wrapping_add(t * stride + c);
                let (v0, v1) = (
                    _mm512_maskz_loadu_ps(m0, vt),
                    _mm512_maskz_loadu_ps(m1, vt.wrapping_add(16)),
                );
                for (a, pi) in acc.iter_mut().zip(p) {
                    let x = _mm512_set1_ps(*pi.get_unchecked(t));
                    a[0] = _mm512_fmadd_ps(x, v0, a[0]);
                    a[1] = _mm512_fmadd_ps(x, v1, a[1]);
                }
            }
            for (a, &row) in acc.iter().zip(&dst) {
                _mm512_mask_storeu_ps(row.wrapping_add(c), m0, a[0]);
                _mm512_mask_storeu_ps(row.wrapping_add(c + 16), m1, a[1]);
            }
        }
    }
}
