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

use crate::cpu::{dot, fma_available, with_cpu_f32};
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
    let shape = format!("[m {m}, n {n}, k {k}]");
    check_len("gemv", "x", x.len(), m * k, &shape)?;
    check_len("gemv", "w", w.len(), n * k, &shape)?;
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let mut yt = vec![0.0f32; n * m]; // [n, m]: each task writes whole rows
    let fma = fma_available();
    let block = |(task, out): (usize, &mut [f32])| {
        for (r, slot) in out.chunks_mut(m).enumerate() {
            let row = &w[(task * ROWS_PER_TASK + r) * k..][..k];
            for (t, y) in slot.iter_mut().enumerate() {
                *y = dot(fma, row, &x[t * k..(t + 1) * k]);
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
        && w.dtype() == DType::F32;
    let y = if fast {
        let x = x.contiguous()?;
        let out = with_cpu_f32(&x, |xs| with_cpu_f32(w, |ws| gemv(xs, rows, ws, n, k))).flatten();
        match out {
            Some(y) => {
                let y = y.map_err(candle_core::Error::wrap)?;
                let mut shape = dims;
                if let Some(last) = shape.last_mut() {
                    *last = n;
                }
                Tensor::from_vec(y, shape, &Device::Cpu)?
            }
            None => x.broadcast_matmul(&w.t()?)?,
        }
    } else {
        x.broadcast_matmul(&w.t()?)?
    };
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}
