//! Linear layers for decoding on the CPU: `y = x · Wᵀ + b` with `W [out, in]`.
//!
//! With one to [`GEMV_MAX_ROWS`] input rows (decoding) the product is a matrix-vector product
//! bound by reading `W` once. candle 0.11 runs it on one thread; [`gemv`] splits the output rows
//! of large matrices over rayon tasks with an AVX2+FMA dot product (runtime detection, portable
//! fallback), so every core streams `W`: on this project's 2-core machine a 32000×512 f32 GEMV
//! reads 25.6 GB/s on two threads against 18.8 on one. More rows go to [`matmul`] (frugal's own
//! AVX-512 product or the `gemm` crate), other dtypes or devices to candle's matmul. The layer built on it, a drop-in for `candle_nn::Linear`, is
//! `layers::Linear`.
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::cpu::{dot4, dot_row, fma_available, with_cpu_f32, WeightElem};
use crate::cpu_math::Glu;
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
    gemv_with(x, m, w, n, k)
}

/// [`gemv`] with bf16 weights, widened to f32 as they are read (exactly): half the bytes of the
/// f32 matrix for the same products. A bf16 checkpoint's output embedding stays bf16 in an f32
/// model and its decode GEMV reads half as much.
pub fn gemv_bf16(x: &[f32], m: usize, w: &[half::bf16], n: usize, k: usize) -> Result<Vec<f32>> {
    gemv_with(x, m, w, n, k)
}

fn gemv_with<W: WeightElem>(x: &[f32], m: usize, w: &[W], n: usize, k: usize) -> Result<Vec<f32>> {
    let shape = format!("[m {m}, n {n}, k {k}]");
    check_len("gemv", "x", x.len(), m * k, &shape)?;
    check_len("gemv", "w", w.len(), n * k, &shape)?;
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let fma = fma_available();
    let inputs: Vec<&[f32]> = (0..m).map(|t| &x[t * k..(t + 1) * k]).collect();
    Ok(rows_in_fours_times_inputs(
        n,
        &inputs,
        n * k >= PARALLEL_MIN_WEIGHTS,
        |j, xs| dot4(fma, &w[j * k..][..4 * k], xs),
        |j, xs| dot_row(fma, &w[j * k..][..k], xs),
    ))
}

/// `y [m, n]` with `y[t, j] = dot(j, inputs[t])`: each output row `j` (a weight row, read once)
/// against every input, in tasks of [`ROWS_PER_TASK`] rows, on the pool when `parallel`. The GEMVs
/// of f32, bf16 and 4-bit matrices differ only in `dot`.
pub(crate) fn rows_times_inputs<I: Sync>(
    n: usize,
    inputs: &[I],
    parallel: bool,
    dot: impl Fn(usize, &I) -> f32 + Sync,
) -> Vec<f32> {
    rows_in_fours_times_inputs(
        n,
        inputs,
        parallel,
        |j, input| std::array::from_fn(|r| dot(j + r, input)),
        &dot,
    )
}

/// [`rows_times_inputs`] with rows taken four at a time where a task has four left (`four(j, x)`
/// gives rows `j..j + 4`), and one at a time (`one`) for the rest.
fn rows_in_fours_times_inputs<I: Sync>(
    n: usize,
    inputs: &[I],
    parallel: bool,
    four: impl Fn(usize, &I) -> [f32; 4] + Sync,
    one: impl Fn(usize, &I) -> f32 + Sync,
) -> Vec<f32> {
    let m = inputs.len();
    if m == 0 || n == 0 {
        return Vec::new();
    }
    let mut yt = vec![0.0f32; n * m]; // [n, m]: each task writes whole rows
    let block = |(task, out): (usize, &mut [f32])| {
        let first = task * ROWS_PER_TASK;
        let rows = out.len() / m;
        let fours = rows / 4 * 4;
        let (quads, rest) = out.split_at_mut(fours * m);
        for (q, slots) in quads.chunks_mut(4 * m).enumerate() {
            for (t, input) in inputs.iter().enumerate() {
                for (r, y) in four(first + 4 * q, input).into_iter().enumerate() {
                    slots[r * m + t] = y;
                }
            }
        }
        for (r, slot) in rest.chunks_mut(m).enumerate() {
            for (y, input) in slot.iter_mut().zip(inputs) {
                *y = one(first + fours + r, input);
            }
        }
    };
    if parallel {
        yt.par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(block);
    } else {
        yt.chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(block);
    }
    if m == 1 {
        return yt;
    }
    let mut y = vec![0.0f32; m * n];
    for (j, col) in yt.chunks(m).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            y[t * n + j] = v;
        }
    }
    y
}

/// `x [.., in] · wᵀ (+ b)` for `w [out, in]`. f32 rows on the CPU with f32 or bf16 weights: the
/// threaded GEMV for up to [`GEMV_MAX_ROWS`] rows, [`matmul`] for more (bf16 widened exactly inside
/// either), the bias added in the same call. Anything else: candle's matmul and `broadcast_add`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    if let Some(y) = linear_host(x, w, b, HostEpilogue::Store)? {
        return Ok(y);
    }
    // candle's matmul takes one dtype: other weights are widened (exactly for bf16) first.
    let y = x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `linear(x, w, b) + residual` (a residual connection after a layer's last product): for a prompt
/// (more than [`GEMV_MAX_ROWS`] rows) of f32 on an AVX-512 CPU the residual is added inside the
/// product ([`Epilogue::Add`]), otherwise by a second pass. `residual` has the product's shape.
pub fn linear_add(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    if let Some(y) = linear_host(x, w, b, HostEpilogue::Add(residual))? {
        return Ok(y);
    }
    crate::cpu_math::add_tensors(&linear(x, w, b)?, residual)
}

/// `act(g) ⊙ u` for `[g | u] = linear(x, w, b)` (a stacked gate and up projection, `w`
/// `[2·half, in]`): for a prompt of f32 on an AVX-512 CPU taken inside the product
/// ([`Epilogue::Glu`]; the `[.., 2·half]` product is never stored), otherwise by
/// [`crate::cpu_math::glu_halves`] after it. `[.., half]`.
pub fn linear_glu(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    act: Glu,
) -> candle_core::Result<Tensor> {
    if let Some(y) = linear_host(x, w, b, HostEpilogue::Glu(act))? {
        return Ok(y);
    }
    crate::cpu_math::glu_halves(&linear(x, w, b)?, act)
}

/// [`Epilogue`] with the residual still a tensor.
#[derive(Clone, Copy)]
enum HostEpilogue<'a> {
    Store,
    Add(&'a Tensor),
    Glu(Glu),
}

/// The host paths of [`linear`], [`linear_add`] and [`linear_glu`], or `None` where they do not
/// apply (another device or dtype; an epilogue on a product that is not a prompt's on an AVX-512
/// CPU, which the callers finish with a second pass).
fn linear_host(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    epilogue: HostEpilogue<'_>,
) -> candle_core::Result<Option<Tensor>> {
    let (n, k) = w.dims2()?;
    let dims = x.dims().to_vec();
    let rows = if dims.last() == Some(&k) {
        x.elem_count() / k.max(1)
    } else {
        usize::MAX
    };
    let host = rows != usize::MAX
        && matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && matches!(w.dtype(), DType::F32 | DType::BF16)
        && b.is_none_or(|b| b.dtype() == DType::F32 && b.dims() == [n]);
    let fused = |e| rows > GEMV_MAX_ROWS && crate::cpu_gemm::takes(rows, k, e);
    let epilogue_fits = match epilogue {
        HostEpilogue::Store => true,
        HostEpilogue::Add(r) => {
            // The product's own shape (anything else is the second pass's to refuse).
            let lead = dims.split_last().map_or(&[][..], |(_, lead)| lead);
            let same_shape = r.dims().split_last() == Some((&n, lead));
            fused(Epilogue::Add(&[]))
                && r.dtype() == DType::F32
                && matches!(r.device(), Device::Cpu)
                && same_shape
        }
        HostEpilogue::Glu(act) => fused(Epilogue::Glu(act)) && n.is_multiple_of(2),
    };
    if !host || !epilogue_fits {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let bias = b.map(Tensor::contiguous).transpose()?;
    let residual = match epilogue {
        HostEpilogue::Add(r) => Some(r.contiguous()?),
        _ => None,
    };
    let product = |xs: &[f32], bias: Option<&[f32]>, epilogue: Epilogue<'_>| {
        with_weights(w, |weights| {
            if rows > GEMV_MAX_ROWS {
                return matmul_with(xs, rows, weights, n, k, bias, epilogue);
            }
            let mut y = match weights {
                Weights::F32(ws) => gemv(xs, rows, ws, n, k),
                Weights::Bf16(ws) => gemv_bf16(xs, rows, ws, n, k),
            }?;
            if let Some(bias) = bias {
                for row in y.chunks_mut(n.max(1)) {
                    row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                }
            }
            Ok(y)
        })
    };
    let with_bias = |xs: &[f32], epilogue: Epilogue<'_>| match &bias {
        Some(bias) => with_cpu_f32(bias, |bs| product(xs, Some(bs), epilogue)).flatten(),
        None => product(xs, None, epilogue),
    };
    let out = with_cpu_f32(&x, |xs| match (&residual, epilogue) {
        (Some(r), _) => with_cpu_f32(r, |rs| with_bias(xs, Epilogue::Add(rs))).flatten(),
        (None, HostEpilogue::Glu(act)) => with_bias(xs, Epilogue::Glu(act)),
        (None, _) => with_bias(xs, Epilogue::Store),
    })
    .flatten();
    let Some(y) = out else {
        return Ok(None);
    };
    let mut shape = dims;
    if let Some(last) = shape.last_mut() {
        *last = match epilogue {
            HostEpilogue::Glu(_) => n / 2,
            _ => n,
        };
    }
    Ok(Some(Tensor::from_vec(
        y.map_err(candle_core::Error::wrap)?,
        shape,
        &Device::Cpu,
    )?))
}

/// A weight matrix's values on the host, in the dtype it is kept in.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [half::bf16]),
}

impl Weights<'_> {
    /// How many values the matrix holds.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`matmul_with`] does with the product `x · wᵀ (+ bias)` on its way out: on AVX-512 (below
/// `cpu_gemm::MAX_ROWS` rows) inside the product, as each tile's sums leave the registers, so the
/// output is written once and never read back; elsewhere in a second pass.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// Stored as it is.
    Store,
    /// Plus `r [m, n]`, added last (a residual connection): `(x · wᵀ + bias) + r`.
    Add(&'a [f32]),
    /// Rows `[g | u]` of `n` values become `act(g) ⊙ u`, rows of `n / 2` (a stacked gate and up
    /// projection's gated linear unit): the output is `[m, n / 2]`.
    Glu(Glu),
}

/// Calls `f` with the values of a contiguous f32 or bf16 CPU matrix, without copying.
fn with_weights<R>(w: &Tensor, f: impl FnOnce(Weights<'_>) -> R) -> Option<R> {
    match w.dtype() {
        DType::BF16 => with_cpu_bf16(w, |ws| f(Weights::Bf16(ws))),
        _ => with_cpu_f32(w, |ws| f(Weights::F32(ws))),
    }
}

/// bf16 weights widened per block of output rows for a product of many rows (prefill).
pub(crate) const WIDEN_BLOCK_VALUES: usize = 1 << 19;

thread_local! {
    /// A block of widened bf16 weights, kept between calls (no allocation per product).
    static WIDENED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `y [m, n] = x [m, k] · wᵀ (+ bias)` for `w [n, k]`, threaded over the rayon pool it is called
/// from. Below [`crate::cpu_gemm::MAX_ROWS`] rows on an AVX-512 machine, frugal's own product
/// ([`crate::cpu_gemm`], bf16 widened exactly as its panels are packed); otherwise the `gemm`
/// crate. Either way the bias is the destination's starting value and the product accumulates
/// onto it: no second pass over the output, and no candle elementwise op (whose own thread pool
/// spins for a while after each call, taking a core from the product's threads on a small
/// machine). On the `gemm` path bf16 weights are widened exactly, 2^19 values at a time into a
/// reused buffer that stays in cache for that block's product, never a copy of the whole matrix.
pub fn matmul(
    x: &[f32],
    m: usize,
    w: Weights<'_>,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    matmul_with(x, m, w, n, k, bias, Epilogue::Store)
}

/// [`matmul`], then `epilogue` (a residual `[m, n]` added, or a GLU taken: the output is then
/// `[m, n / 2]`), inside the product where [`crate::cpu_gemm`] takes it, in a second pass
/// otherwise; the same values either way.
pub fn matmul_with(
    x: &[f32],
    m: usize,
    w: Weights<'_>,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) -> Result<Vec<f32>> {
    let shape = format!("[m {m}, n {n}, k {k}]");
    check_len("matmul", "x", x.len(), m * k, &shape)?;
    check_len("matmul", "w", w.len(), n * k, &shape)?;
    if let Some(bias) = bias {
        check_len("matmul", "bias", bias.len(), n, &shape)?;
    }
    match epilogue {
        Epilogue::Store => {}
        Epilogue::Add(r) => check_len("matmul", "residual", r.len(), m * n, &shape)?,
        Epilogue::Glu(_) => {
            if !n.is_multiple_of(2) {
                return Err(crate::KernelError::Invalid {
                    kernel: "matmul",
                    arg: "w",
                    message: format!("a GLU needs an even number of rows [g; u], not {n}"),
                });
            }
        }
    }
    if m > 0 && n > 0 && k > 0 && crate::cpu_gemm::takes(m, k, epilogue) {
        return Ok(crate::cpu_gemm::gemm(x, m, w, n, k, bias, epilogue));
    }
    let y = gemm_crate(x, m, w, n, k, bias);
    Ok(match epilogue {
        Epilogue::Store => y,
        Epilogue::Add(r) => {
            let mut y = y;
            y.iter_mut().zip(r).for_each(|(y, r)| *y += r);
            y
        }
        Epilogue::Glu(Glu::GeluTanh) => crate::cpu_math::gelu_tanh_mul_halves(&y, n / 2)?,
        Epilogue::Glu(Glu::Silu) => crate::cpu_math::silu_mul_halves(&y, n / 2)?,
    })
}

/// `x · wᵀ (+ bias)` by the `gemm` crate.
fn gemm_crate(
    x: &[f32],
    m: usize,
    w: Weights<'_>,
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = match bias {
        Some(bias) => bias.repeat(m),
        None => vec![0.0f32; m * n],
    };
    if m == 0 || n == 0 || k == 0 {
        return y;
    }
    match w {
        Weights::F32(w) => gemm_into(&mut y, 0, x, m, w, n, k, bias.is_some()),
        Weights::Bf16(w) => {
            let block_rows = (WIDEN_BLOCK_VALUES / k).max(16).min(n);
            // Taken out while in use: a rayon thread waiting inside the product may run another
            // call's task, which then finds the slot empty and allocates its own.
            let mut wide = WIDENED.take();
            for (i, block) in w.chunks(block_rows * k).enumerate() {
                wide.resize(block.len(), 0.0);
                widen(block, &mut wide);
                let rows = block.len() / k;
                gemm_into(&mut y, i * block_rows, x, m, &wide, rows, k, bias.is_some());
            }
            WIDENED.set(wide);
        }
    }
    y
}

/// `bf16 → f32`, exactly (a bf16 is the top half of the f32 it widens to), threaded when large.
fn widen(from: &[half::bf16], to: &mut [f32]) {
    let run = |(o, i): (&mut [f32], &[half::bf16])| {
        for (o, i) in o.iter_mut().zip(i) {
            *o = f32::from_bits(u32::from(i.to_bits()) << 16);
        }
    };
    if from.len() >= PARALLEL_MIN_WEIGHTS {
        to.par_chunks_mut(1 << 14)
            .zip(from.par_chunks(1 << 14))
            .for_each(run);
    } else {
        run((to, from));
    }
}

/// Columns `col..col + rows` of `y [m, n]` `(+)= x [m, k] · w [rows, k]ᵀ`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into(
    y: &mut [f32],
    col: usize,
    x: &[f32],
    m: usize,
    w: &[f32],
    rows: usize,
    k: usize,
    accumulate: bool,
) {
    let n = y.len() / m;
    assert!(
        col + rows <= n && x.len() >= m * k && w.len() >= rows * k,
        "gemm_into: [m {m}, n {n}, k {k}] columns {col}..{}",
        col + rows
    );
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `y` holds m rows of n with columns col..col + rows inside them, `x` m rows of k and
    // `w` `rows` rows of k (asserted above); the strides below stay within those: y[i, j] at
    // i·n + j, x[i, c] at i·k + c, wᵀ[c, j] = w[j, c] at j·k + c.
    unsafe {
        gemm::gemm(
            m,
            rows,
            k,
            y.as_mut_ptr().add(col),
            1,
            n as isize,
            accumulate,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
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
