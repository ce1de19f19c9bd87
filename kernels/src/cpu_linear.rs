//! Linear layers for decoding on the CPU: `y = x · Wᵀ + b` with `W [out, in]`.
//!
//! With one to [`GEMV_MAX_ROWS`] input rows (decoding) the product is a matrix-vector product
//! bound by reading `W` once. candle 0.11 runs it on one thread; [`gemv`] splits the output rows
//! of large matrices over rayon tasks with an AVX2+FMA dot product (runtime detection, portable
//! fallback), so every core streams `W`: on this project's 2-core machine a 32000×512 f32 GEMV
//! reads 25.6 GB/s on two threads against 18.8 on one. More rows, other dtypes or devices go to candle's matmul. [`Linear`] is a
//! drop-in for `candle_nn::Linear`.
use candle_core::{CpuStorage, DType, Device, Module, Storage, Tensor};
use rayon::prelude::*;

/// Input rows up to which [`linear`] takes the GEMV path.
pub const GEMV_MAX_ROWS: usize = 4;
/// Output rows per rayon task.
const ROWS_PER_TASK: usize = 64;
/// Below this many weights a GEMV runs on the calling thread: splitting costs more than it saves.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 18;

/// `y [m, n] = x [m, k] · w [n, k]ᵀ`, threaded over output rows. Panics if the lengths disagree
/// (callers check; [`linear`] does).
pub fn gemv(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    assert!(
        x.len() == m * k && w.len() == n * k,
        "gemv: lengths do not match [m {m}, n {n}, k {k}]"
    );
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
    y
}

fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn dot(fma: bool, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: AVX2 and FMA are present (checked at run time); equal lengths (asserted above).
        return unsafe { dot_fma(a, b) };
    }
    let _ = fma;
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 <= n, inside both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * j)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8 * j)),
                )
            };
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let lanes: [f32; 8] = unsafe { std::mem::transmute(sum) };
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

/// The f32 elements of a contiguous CPU tensor, without copying.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => Some(f(&data[start..end])),
        _ => None,
    }
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

/// A drop-in for `candle_nn::Linear` whose decode steps take [`linear`]'s GEMV path.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        linear(x, &self.weight, self.bias.as_ref())
    }
}

impl From<candle_nn::Linear> for Linear {
    fn from(l: candle_nn::Linear) -> Self {
        Linear {
            weight: l.weight().clone(),
            bias: l.bias().cloned(),
        }
    }
}
