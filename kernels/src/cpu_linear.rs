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
/// f32 on the CPU, candle's matmul otherwise.
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

/// An f32 matrix on the CPU whose every value is a bf16 (a bf16 checkpoint's weights loaded in
/// f32) returned in bf16: it loses nothing, takes half the memory, and [`linear`]'s decode GEMV
/// over it reads half the bytes, widening each value exactly ([`gemv_bf16`]). Anything else (other
/// values, dtypes, devices) comes back as it is.
pub fn bf16_if_exact(w: Tensor) -> candle_core::Result<Tensor> {
    let exact = with_cpu_f32(&w, |v| v.iter().all(|x| x.to_bits() & 0xffff == 0));
    if exact == Some(true) {
        w.to_dtype(DType::BF16)
    } else {
        Ok(w)
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
