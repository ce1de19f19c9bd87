//! The ternary matmul on a GPU: `kernels/cuda/ternary_matmul.cu` with the plan of
//! [`crate::ternary_matmul::plan`]. Weights are uploaded once, packed ([`DeviceTernary`]).
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use super::{cuda_err, function};
use crate::error::{check_len, KernelError, Result};
use crate::params::{FrugalTernaryMatmulParams, FrugalTernaryQuantizeParams};
use crate::plan::KernelLaunch;
use crate::ptx::TERNARY_MATMUL;
use crate::ternary_matmul::plan::plan;
use crate::ternary_matmul::{PackedTernary, TernaryShape, KERNEL};

/// Packed weights on a device: the same bytes as [`PackedTernary`], never unpacked.
#[derive(Debug)]
pub struct DeviceTernary {
    pub bytes: CudaSlice<u8>,
    pub n: usize,
    pub k: usize,
    pub k_padded: usize,
    pub scale: f32,
}

impl DeviceTernary {
    pub fn upload(stream: &Arc<CudaStream>, w: &PackedTernary) -> Result<Self> {
        Ok(DeviceTernary {
            bytes: stream
                .clone_htod(w.bytes())
                .map_err(cuda_err("uploading packed ternary weights"))?,
            n: w.n(),
            k: w.k(),
            k_padded: w.k_padded(),
            scale: w.scale(),
        })
    }
}

fn config(l: &KernelLaunch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
        block_dim: (l.block[0], l.block[1], l.block[2]),
        shared_mem_bytes: l.shared_bytes,
    }
}

/// `y [m, n]` for `x [m, k]` on the device: quantisation, then the GEMV or the GEMM.
pub fn ternary_matmul_gpu(
    stream: &Arc<CudaStream>,
    x: &CudaSlice<f32>,
    m: usize,
    w: &DeviceTernary,
) -> Result<CudaSlice<f32>> {
    let ctx = stream.context();
    for (arg, other) in [("x", x.context()), ("weights", w.bytes.context())] {
        if other.ordinal() != ctx.ordinal() {
            return Err(KernelError::Device {
                kernel: KERNEL,
                arg,
                expected: format!("cuda:{}", ctx.ordinal()),
                found: format!("cuda:{}", other.ordinal()),
            });
        }
    }
    let shape = TernaryShape {
        m,
        n: w.n,
        k: w.k,
        k_padded: w.k_padded,
    };
    crate::error::check_dims(KERNEL, &[("m (tokens)", m)])?;
    check_len(KERNEL, "x", x.len(), m * w.k, &shape)?;
    check_len(
        KERNEL,
        "weights",
        w.bytes.len(),
        w.n * w.k_padded / 4,
        &shape,
    )?;
    let plan = plan(shape)?;
    let alloc_err = cuda_err("allocating ternary matmul buffers");
    let x_q = stream
        .alloc_zeros::<i8>(m * w.k_padded)
        .map_err(&alloc_err)?;
    let x_scale = stream.alloc_zeros::<f32>(m).map_err(&alloc_err)?;
    let x_sum = stream.alloc_zeros::<i32>(m).map_err(&alloc_err)?;
    let y = stream.alloc_zeros::<f32>(m * w.n).map_err(&alloc_err)?;
    {
        let (xp, _a) = x.device_ptr(stream);
        let (qp, _b) = x_q.device_ptr(stream);
        let (sp, _c) = x_scale.device_ptr(stream);
        let (up, _d) = x_sum.device_ptr(stream);
        let (wp, _e) = w.bytes.device_ptr(stream);
        let (yp, _f) = y.device_ptr(stream);
        let quantize = FrugalTernaryQuantizeParams {
            x: xp as *const f32,
            x_q: qp as *mut i8,
            x_scale: sp as *mut f32,
            x_sum: up as *mut i32,
            m: m as i32,
            k: w.k as i32,
            k_padded: w.k_padded as i32,
        };
        let matmul = FrugalTernaryMatmulParams {
            x_q: qp as *const i8,
            x_scale: sp as *const f32,
            x_sum: up as *const i32,
            w: wp as *const u8,
            y: yp as *mut f32,
            scale: w.scale,
            m: m as i32,
            n: w.n as i32,
            k_padded: w.k_padded as i32,
        };
        let f = function(ctx, TERNARY_MATMUL, plan.quantize.kernel)?;
        let mut b = stream.launch_builder(&f);
        b.arg(&quantize);
        // SAFETY: every buffer is allocated above (or length-checked) for this shape.
        unsafe { b.launch(config(&plan.quantize)) }
            .map_err(cuda_err("launching ternary quantize"))?;
        let f = function(ctx, TERNARY_MATMUL, plan.matmul.kernel)?;
        let mut b = stream.launch_builder(&f);
        b.arg(&matmul);
        // SAFETY: as above.
        unsafe { b.launch(config(&plan.matmul)) }.map_err(cuda_err("launching ternary matmul"))?;
    }
    Ok(y)
}

// SAFETY: plain C structs of pointers, integers and a float (`frugal_params.h`), passed by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalTernaryQuantizeParams {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for FrugalTernaryMatmulParams {}
