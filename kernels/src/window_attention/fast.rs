//! The fast CPU path: per query row (threaded), per head, one online-softmax pass over only the
//! visible keys, in blocks of [`KEY_BLOCK`]: the running max, normaliser and output are rescaled
//! when a block raises the max. Work O(q_len · visible · d), memory O(d) per row.
//!
//! With fewer rows than threads (decoding) each row's keys are split into ranges, one task each,
//! and the partial states merged at the end, as flash-decoding does on GPUs: every thread reads
//! its own stretch of whole cache rows.
//!
//! Prefill on x86-64 with AVX2 and FMA takes register-blocked tiles of many rows instead
//! (`super::tiled`); decoding, other CPUs and short chunks take the per-row path here.
use rayon::prelude::*;

use super::{softmax_block, WindowInput, WindowShape, PARALLEL_MIN_MACS};
use crate::cpu::{dot, fma_available, KvElem};
use crate::cpu_math::simd;

/// Keys scored per block: one max, one vectorised `exp` pass and at most one rescale each.
pub(super) const KEY_BLOCK: usize = 64;
use crate::error::Result;

pub fn window_attention_cpu<E: KvElem>(input: &WindowInput<'_, E>) -> Result<Vec<f32>> {
    input.validate()?;
    let s = input.shape;
    let (h, d) = (s.heads, s.head_dim);
    // Visible keys: in all rows, and in the longest.
    let (keys, longest) = (0..s.q_len)
        .map(|i| s.visible(i))
        .map(|(lo, hi)| hi + 1 - lo)
        .fold((0, 0), |(sum, max), n| (sum + n, max.max(n)));
    // Threads are woken only for enough work: a small model's short decode step costs less than
    // waking the pool.
    let parallel = s.batch * keys * h * d >= PARALLEL_MIN_MACS;
    #[cfg(target_arch = "x86_64")]
    if fma_available() && s.q_len >= super::tiled::ROW_TILE {
        let mut o = vec![0.0f32; s.q_elems()];
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let (shape, k, v) = visible_f32(input, &mut k, &mut v);
        let input = WindowInput {
            shape,
            q: input.q,
            k,
            v,
            scale: input.scale,
        };
        prefill(&input, &mut o, parallel);
        return Ok(o);
    }
    let mut o = vec![0.0f32; s.q_elems()];
    let rows = s.batch * s.q_len;
    // Fewer query rows than threads (decoding): each row's keys are split into `parts` ranges,
    // one task each, whose partial softmax states are merged afterwards (as flash-decoding
    // does). Splitting by KV head instead left each thread reading every other 256-byte piece of
    // the cache rows, and at most `kv_heads` threads busy.
    let threads = rayon::current_num_threads();
    let parts = if parallel && rows < threads {
        threads
            .div_ceil(rows)
            .min(longest.div_ceil(MIN_PART_KEYS))
            .max(1)
    } else {
        1
    };
    let row_len = h * d;
    if parts == 1 {
        let task = |(row, out): (usize, &mut [f32])| {
            let (lo, hi) = s.visible(row % s.q_len);
            let mut states = vec![(f32::NEG_INFINITY, 0.0f32); h];
            attend_keys(input, row, lo, hi, out, &mut states);
            for (acc, &(_, total)) in out.chunks_mut(d).zip(&states) {
                acc.iter_mut().for_each(|a| *a /= total);
            }
        };
        if parallel {
            o.par_chunks_mut(row_len).enumerate().for_each(task);
        } else {
            o.chunks_mut(row_len).enumerate().for_each(task);
        }
        return Ok(o);
    }
    // [rows, parts, heads, head_dim] unnormalised outputs and [rows, parts, heads] states.
    let mut partial = vec![0.0f32; rows * parts * row_len];
    let mut states = vec![(f32::NEG_INFINITY, 0.0f32); rows * parts * h];
    partial
        .par_chunks_mut(row_len)
        .zip(states.par_chunks_mut(h))
        .enumerate()
        .for_each(|(task, (out, states))| {
            let (row, part) = (task / parts, task % parts);
            let (lo, hi) = s.visible(row % s.q_len);
            let chunk = (hi + 1 - lo).div_ceil(parts);
            let first = lo + part * chunk;
            if first <= hi {
                attend_keys(input, row, first, hi.min(first + chunk - 1), out, states);
            }
        });
    // Merge: each part's sums rescaled from its own max to the row's.
    for (row, o) in o.chunks_mut(row_len).enumerate() {
        for head in 0..h {
            let at = |part: usize| (row * parts + part) * h + head;
            let max = (0..parts).fold(f32::NEG_INFINITY, |m, p| m.max(states[at(p)].0));
            let o = &mut o[head * d..][..d];
            let mut total = 0.0f32;
            for part in 0..parts {
                let (part_max, part_total) = states[at(part)];
                if part_total == 0.0 {
                    continue; // an empty range
                }
                let w = crate::cpu_math::exp(part_max - max);
                total += w * part_total;
                let acc = &partial[at(part) * d..][..d];
                o.iter_mut().zip(acc).for_each(|(o, a)| *o += w * a);
            }
            o.iter_mut().for_each(|a| *a /= total);
        }
    }
    Ok(o)
}

/// The keys and values some query sees, as f32: `input`'s own when they are f32; otherwise the
/// cache's rows up to the last query's position, widened (not the whole capacity).
fn visible_f32<'s, E: KvElem>(
    input: &WindowInput<'s, E>,
    k: &'s mut Vec<f32>,
    v: &'s mut Vec<f32>,
) -> (WindowShape, &'s [f32], &'s [f32]) {
    let s = input.shape;
    let row = s.kv_heads * s.head_dim;
    let seen = s.q_offset + s.q_len - s.k_offset;
    let mut shape = s;
    if seen < s.k_len && std::any::TypeId::of::<E>() != std::any::TypeId::of::<f32>() {
        shape.k_len = seen;
    }
    let widen = |src: &'s [E], out: &'s mut Vec<f32>| -> &'s [f32] {
        if shape.k_len == s.k_len {
            return E::as_f32(src, out);
        }
        let mut all = Vec::with_capacity(s.batch * seen * row);
        let mut block = Vec::new();
        for b in 0..s.batch {
            all.extend_from_slice(E::as_f32(
                &src[b * s.k_len * row..][..seen * row],
                &mut block,
            ));
        }
        *out = all;
        out
    };
    (shape, widen(input.k, k), widen(input.v, v))
}

/// Keys a split part takes at least: fewer would cost more in waking threads and merging than
/// they save.
const MIN_PART_KEYS: usize = 2 * KEY_BLOCK;

/// Online softmax of query row `row`'s heads over keys `lo..=hi`: `accs` (`[heads, head_dim]`)
/// gets the unnormalised weighted sums of values and `states` each head's running max and
/// normaliser. Keys go in blocks of [`KEY_BLOCK`], every head through each block before the
/// next: a block's keys and values (whole cache rows, all KV heads) are read from memory once
/// and are still in L1 or L2 for the other heads. Per head and block, the scores first, then
/// one max, one vectorised pass of `exp` and one rescale (not one per key), then the weighted
/// sum of the block's values.
fn attend_keys<E: KvElem>(
    input: &WindowInput<'_, E>,
    row: usize,
    lo: usize,
    hi: usize,
    accs: &mut [f32],
    states: &mut [(f32, f32)],
) {
    let s = input.shape;
    let (h, hk, d) = (s.heads, s.kv_heads, s.head_dim);
    #[cfg(target_arch = "x86_64")]
    if super::rows_avx2::available::<E>(d) {
        // SAFETY: the CPU features and head size are checked; the caller validated `input` and
        // the key range.
        unsafe { super::rows_avx2::attend_keys(input, row, lo, hi, accs, states) };
        return;
    }
    let group = h / hk;
    let b = row / s.q_len;
    simd(
        #[inline(always)]
        || {
            let fma = fma_available();
            let mut p = [0.0f32; KEY_BLOCK];
            let (mut k_block, mut v_block) = (Vec::new(), Vec::new());
            let mut start = lo;
            while start <= hi {
                let n = (hi + 1 - start).min(KEY_BLOCK);
                // The block's cache rows (every KV head), as f32: a half-precision cache is
                // widened here, once for all heads.
                let rows = (b * s.k_len + start) * hk * d..(b * s.k_len + start + n) * hk * d;
                let keys = E::as_f32(&input.k[rows.clone()], &mut k_block);
                let values = E::as_f32(&input.v[rows], &mut v_block);
                for (head, (acc, (max, total))) in
                    accs.chunks_mut(d).zip(states.iter_mut()).enumerate()
                {
                    let kv = head / group;
                    let key_at = |j: usize| ((j - start) * hk + kv) * d;
                    let q = &input.q[(row * h + head) * d..][..d];
                    let p = &mut p[..n];
                    let mut eight = p.chunks_exact_mut(8);
                    for (e, scores) in (&mut eight).enumerate() {
                        let keys: [&[f32]; 8] = std::array::from_fn(|t| {
                            let at = key_at(start + 8 * e + t);
                            &keys[at..at + d]
                        });
                        dot8(q, keys, scores);
                    }
                    let done = n / 8 * 8;
                    for (t, score) in eight.into_remainder().iter_mut().enumerate() {
                        let at = key_at(start + done + t);
                        *score = dot(fma, q, &keys[at..at + d]);
                    }
                    softmax_block(p, input.scale, max, total, acc);
                    // 64 outputs at a time held in eight vector registers across the block's
                    // values: eight independent sums, not one chain through memory.
                    let wide = d / 64 * 64;
                    for tile in (0..wide).step_by(64) {
                        let mut r = [[0.0f32; 8]; 8];
                        for (r, a) in r.iter_mut().zip(acc[tile..tile + 64].chunks_exact(8)) {
                            r.copy_from_slice(a);
                        }
                        for (t, &weight) in p.iter().enumerate() {
                            let v = &values[key_at(start + t) + tile..][..64];
                            for (r, v) in r.iter_mut().zip(v.chunks_exact(8)) {
                                for l in 0..8 {
                                    r[l] = weight.mul_add(v[l], r[l]);
                                }
                            }
                        }
                        for (r, a) in r.iter().zip(acc[tile..tile + 64].chunks_exact_mut(8)) {
                            a.copy_from_slice(r);
                        }
                    }
                    for (t, &weight) in p.iter().enumerate() {
                        let at = key_at(start + t);
                        for (a, &v) in acc[wide..].iter_mut().zip(&values[at + wide..at + d]) {
                            *a += weight * v;
                        }
                    }
                }
                start += n;
            }
        },
    )
}

/// `q·k_t` for eight keys at once: eight lane-wise accumulators (one vector register each
/// where the caller is compiled for AVX2), each reduced once at the end, so the horizontal sums
/// cost once per eight keys' worth of work rather than once per call of a dot product.
/// `mul_add` is one FMA instruction inside [`simd`] (the only caller on CPUs that have it).
#[inline(always)]
fn dot8(q: &[f32], keys: [&[f32]; 8], out: &mut [f32]) {
    let d = q.len();
    let lanes = d / 8 * 8;
    let mut acc = [[0.0f32; 8]; 8];
    for c in (0..lanes).step_by(8) {
        let q8 = &q[c..c + 8];
        for (a, k) in acc.iter_mut().zip(&keys) {
            let k8 = &k[c..c + 8];
            for l in 0..8 {
                a[l] = q8[l].mul_add(k8[l], a[l]);
            }
        }
    }
    for ((o, a), k) in out.iter_mut().zip(&acc).zip(&keys) {
        let tail: f32 = q[lanes..]
            .iter()
            .zip(&k[lanes..d])
            .map(|(x, y)| x * y)
            .sum();
        let pairs = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
        *o = (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail;
    }
}

/// The prefill path: tiles of `tiled::ROW_TILE` rows of each batch, threaded.
#[cfg(target_arch = "x86_64")]
fn prefill(input: &WindowInput<'_>, o: &mut [f32], parallel: bool) {
    use super::tiled::{for_each_tile, prefill_tile, ROW_TILE};
    let s = input.shape;
    let row_len = s.heads * s.head_dim;
    let tile = |(b, (t, out)): (usize, (usize, &mut [f32]))| {
        // SAFETY: the caller checked AVX2 and FMA (`fma`) and validated `input`.
        unsafe { prefill_tile(input, b, t * ROW_TILE, out) }
    };
    for_each_tile(o, s.q_len * row_len, row_len, parallel, tile);
}
