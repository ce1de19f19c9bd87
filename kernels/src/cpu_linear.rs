//! Linear layers for decoding on the CPU: `y = x · Wᵀ + b` with `W [out, in]`.
//!
//! With one to [`GEMV_MAX_ROWS`] input rows (decoding) the product is a matrix-vector product
//! bound by reading `W` once. candle 0.11 runs it on one thread; [`gemv`] splits the output rows
//! of large matrices over rayon tasks with an AVX2+FMA dot product (runtime detection, portable
//! fallback), so every core streams `W`: on this project's 2-core machine a 32000×512 f32 GEMV
//! reads 25.6 GB/s on two threads against 18.8 on one. More rows, other dtypes or devices go to
//! candle's matmul. The layer built on it, a drop-in for `candle_nn::Linear`, is
//! `layers::Linear`.
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::cpu::{dot, dot_bf16, fma_available, with_cpu_f32};
use crate::error::{check_len, Result};

/// Input rows up to which [`linear`] takes the GEMV path.
pub const GEMV_MAX_ROWS: usize = 4;
/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 64;
/// Below this many weights a GEMV runs on the calling thread: splitting costs more than it saves.
/// Called from a pool thread (every model's forward pass is, see `layers::pool`), a split costs
/// little: 2^16 (256 KiB of f32) took the dense baseline's decode step from 450 to 350 µs at
/// hidden 256 against 2^18.
pub const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// `y [m, n] = x [m, k] · w [n, k]ᵀ`, threaded over output rows; an error if the lengths
/// disagree with the shape.
pub fn gemv(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Result<Vec<f32>> {
    let fma = fma_available();
    gemv_with(x, m, w, n, k, |row, xs| dot(fma, row, xs))
}

/// [`gemv`] with bf16 weights, widened to f32 as they are read (exactly): half the bytes of the
/// f32 matrix for the same products. A bf16 checkpoint's output embedding stays bf16 in an f32
/// model and its decode GEMV reads half as much.
pub fn gemv_bf16(x: &[f32], m: usize, w: &[half::bf16], n: usize, k: usize) -> Result<Vec<f32>> {
    let fma = fma_available();
    gemv_with(x, m, w, n, k, |row, xs| dot_bf16(fma, row, xs))
}

fn gemv_with<W: Sync>(
    x: &[f32],
    m: usize,
    w: &[W],
    n: usize,
    k: usize,
    dot_row: impl Fn(&[W], &[f32]) -> f32 + Sync,
) -> Result<Vec<f32>> {
    let shape = format!("[m {m}, n {n}, k {k}]");
    check_len("gemv", "x", x.len(), m * k, &shape)?;
    check_len("gemv", "w", w.len(), n * k, &shape)?;
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let mut yt = vec![0.0f32; n * m]; // [n, m]: each task writes whole rows
    let block = |(task, out): (usize, &mut [f32])| {
        for (r, slot) in out.chunks_mut(m).enumerate() {
            let row = &w[(task * ROWS_PER_TASK + r) * k..][..k];
            for (t, y) in slot.iter_mut().enumerate() {
                *y = dot_row(row, &x[t * k..(t + 1) * k]);
            }
        }
    };
    if n * k < PARALLEL_MIN_WEIGHTS {
        yt.chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(block);
    } else {
        yt.par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(block);
    }
    let mut y = vec![0.0f32; m * n];
    for (j, col) in yt.chunks(m).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            y[t * n + j] = v;
        }
    }
    Ok(y)
}

/// `x [.., in] · wᵀ (+ b)` for `w [out, in]`: the threaded GEMV for up to [`GEMV_MAX_ROWS`] rows of
/// f32 on the CPU, candle's matmul otherwise. bf16 weights under f32 rows on the CPU are widened
/// inside the GEMV, or per block for candle's matmul: the products are those of the f32 values.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let (n, k) = w.dims2()?;
    let dims = x.dims().to_vec();
    let rows = if dims.last() == Some(&k) {
        x.elem_count() / k.max(1)
    } else {
        usize::MAX
    };
    let fast = rows <= GEMV_MAX_ROWS
        && matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && matches!(w.dtype(), DType::F32 | DType::BF16);
    let y = if fast {
        let x = x.contiguous()?;
        let out = with_cpu_f32(&x, |xs| match w.dtype() {
            DType::BF16 => with_cpu_bf16(w, |ws| gemv_bf16(xs, rows, ws, n, k)),
            _ => with_cpu_f32(w, |ws| gemv(xs, rows, ws, n, k)),
        })
        .flatten();
        match out {
            Some(y) => {
                let y = y.map_err(candle_core::Error::wrap)?;
                let mut shape = dims;
                if let Some(last) = shape.last_mut() {
                    *last = n;
                }
                Tensor::from_vec(y, shape, &Device::Cpu)?
            }
            None => x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?,
        }
    } else if x.dtype() == DType::F32
        && w.dtype() == DType::BF16
        && x.device().is_cpu()
        && rows != usize::MAX
        && n * k > 0
    {
        let x = x.contiguous()?;
        match with_cpu_bf16(w, |ws| matmul_widening(&x, ws, n, k)) {
            Some(y) => y?,
            None => x.broadcast_matmul(&w.to_dtype(DType::F32)?.t()?)?,
        }
    } else {
        // candle's matmul takes one dtype: bf16 weights under f32 activations are widened
        // (exactly) first.
        x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?
    };
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// bf16 weights widened per block of output rows for a product of many rows (prefill).
const WIDEN_BLOCK_VALUES: usize = 1 << 19;

/// `x [.., k] · wᵀ` for bf16 `w [n, k]` and f32 `x` on the CPU, with more rows than a GEMV
/// takes: `w` is widened (exactly) [`WIDEN_BLOCK_VALUES`] values at a time, about 2 MiB of f32
/// that stay in cache for candle's matmul of that block, instead of an f32 copy of the whole
/// matrix per call.
fn matmul_widening(
    x: &Tensor,
    w: &[half::bf16],
    n: usize,
    k: usize,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let rows = x.elem_count() / k.max(1);
    let x2 = x.reshape((rows, k))?;
    let block_rows = (WIDEN_BLOCK_VALUES / k.max(1)).max(16).min(n.max(1));
    let mut parts = Vec::with_capacity(n.div_ceil(block_rows));
    for block in w.chunks(block_rows * k) {
        let mut wide = vec![0.0f32; block.len()];
        let widen = |(o, i): (&mut [f32], &[half::bf16])| {
            for (o, i) in o.iter_mut().zip(i) {
                // A bf16 is the top half of the f32 it widens to.
                *o = f32::from_bits(u32::from(i.to_bits()) << 16);
            }
        };
        if block.len() >= PARALLEL_MIN_WEIGHTS {
            wide.par_chunks_mut(1 << 14)
                .zip(block.par_chunks(1 << 14))
                .for_each(widen);
        } else {
            widen((&mut wide, block));
        }
        let wt = Tensor::from_vec(wide, (block.len() / k, k), &Device::Cpu)?;
        parts.push(x2.matmul(&wt.t()?)?);
    }
    let y = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::cat(&parts, 1)?
    };
    let mut shape = dims;
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    y.reshape(shape)
}

/// An f32 matrix on the CPU whose every value is a bf16 (a bf16 checkpoint's weights loaded in
/// f32) returned in bf16: it loses nothing, takes half the memory, and [`linear`]'s decode GEMV
/// over it reads half the bytes, widening each value exactly ([`gemv_bf16`]). Anything else (other
/// values, dtypes, devices) comes back as it is.
pub fn bf16_if_exact(w: Tensor) -> candle_core::Result<Tensor> {
    // One threaded pass that checks and narrows at once (loading a bf16 checkpoint in f32 passes
    // over every weight here), stopping at the first chunk with a value that is not a bf16.
    let narrowed = with_cpu_f32(&w, |values| {
        // Zeroed u16s come from fresh, untouched pages (a bf16 fill would write every page
        // first), so the huge-page hint takes.
        let mut bits = crate::cpu::huge_pages(vec![0u16; values.len()]);
        let out: &mut [half::bf16] =
            half::slice::HalfBitsSliceExt::reinterpret_cast_mut(&mut bits[..]);
        let exact = out
            .par_chunks_mut(1 << 16)
            .zip(values.par_chunks(1 << 16))
            .all(|(out, values)| {
                // Branch-free (it vectorises): narrow every value, keep the OR of the dropped
                // halves, and judge the chunk once.
                let mut dropped = 0u32;
                for (o, x) in out.iter_mut().zip(values) {
                    let bits = x.to_bits();
                    dropped |= bits & 0xffff;
                    *o = half::bf16::from_bits((bits >> 16) as u16);
                }
                dropped == 0
            });
        exact.then(|| half::vec::HalfBitsVecExt::reinterpret_into::<half::bf16>(bits))
    })
    .flatten();
    match narrowed {
        Some(values) => Tensor::from_vec(values, w.shape(), &Device::Cpu),
        None => Ok(w),
    }
}

/// Calls `f` with the bf16 elements of a contiguous CPU tensor, without copying.
fn with_cpu_bf16<R>(t: &Tensor, f: impl FnOnce(&[half::bf16]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::BF16(data)) => {
            Some(f(&data[start..end]))
        }
        _ => None,
    }
}
