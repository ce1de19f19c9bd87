//! Moving activations between candle tensors and the kernels' host buffers, and the time-axis
//! concatenations the caches need. Layout everywhere: `[batch, len, row]` row-major.
use candle_core::{Device, Tensor};

use crate::error::Result;

/// A tensor's f32 elements, row-major.
pub fn to_vec(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.flatten_all()?.to_vec1()?)
}

pub fn from_vec(v: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// `[batch, na, row] ++ [batch, nb, row] -> [batch, na + nb, row]`.
pub fn concat_time(
    a: &[f32],
    na: usize,
    b: &[f32],
    nb: usize,
    batch: usize,
    row: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(batch * (na + nb) * row);
    for s in 0..batch {
        out.extend_from_slice(&a[s * na * row..(s + 1) * na * row]);
        out.extend_from_slice(&b[s * nb * row..(s + 1) * nb * row]);
    }
    out
}

/// The last `keep` of `n` steps of each sequence: `[batch, n, row] -> [batch, keep, row]`.
pub fn tail_time(x: &[f32], n: usize, keep: usize, batch: usize, row: usize) -> Vec<f32> {
    let keep = keep.min(n);
    let mut out = Vec::with_capacity(batch * keep * row);
    for s in 0..batch {
        out.extend_from_slice(&x[(s * n + n - keep) * row..(s + 1) * n * row]);
    }
    out
}
