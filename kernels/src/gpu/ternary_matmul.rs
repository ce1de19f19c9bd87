//! The ternary matmul on a GPU: `kernels/cuda/ternary_matmul.cu` with the plan of
//! [`crate::ternary_matmul::plan`]. Weights are uploaded once, packed ([`DeviceTernary`]).
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::{cuda_err, launch_kernel, same_device};
use crate::error::{check_len, Result};
use crate::params::{FrugalTernaryMatmulParams, FrugalTernaryQuantizeParams};
use crate::ptx::TERNARY_MATMUL;
use crate::ternary_matmul::plan::plan;
use crate::ternary_matmul::{PackedTernary, TernaryShape, KERNEL};

/// Packed weights on a device: the same bytes as [`PackedTernary`], never unpacked.
#[derive(Debug)]
pub struct DeviceTernary<B = CudaSlice<u8>> {
    pub bytes: B,
    pub n: usize,
    pub k: usize,
    pub k_padded: usize,
    pub scale: f32,
}

impl DeviceTernary<CudaSlice<u8>> {
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

/// `y [m, n]` for `x [m, k]` on the device: quantisation, then the GEMV or the GEMM.
pub fn ternary_matmul_gpu(
    stream: &Arc<CudaStream>,
    x: &impl DevicePtr<f32>,
    m: usize,
    w: &DeviceTernary<impl DevicePtr<u8>>,
) -> Result<CudaSlice<f32>> {
    let ctx = stream.context();
    same_device(KERNEL, "x", x.stream().context(), ctx)?;
    same_device(KERNEL, "weights", w.bytes.stream().context(), ctx)?;
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
        // SAFETY: every buffer is allocated above (or length-checked) for this shape.
        unsafe {
            launch_kernel(
                stream,
                TERNARY_MATMUL,
                &plan.quantize,
                &quantize,
                "launching ternary quantize",
            )
        }?;
        // SAFETY: as above.
        unsafe {
            launch_kernel(
                stream,
                TERNARY_MATMUL,
                &plan.matmul,
                &matmul,
                "launching ternary matmul",
            )
        }?;
    }
    Ok(y)
}

// SAFETY: plain C structs of pointers, integers and a float (`frugal_params.h`), passed by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalTernaryQuantizeParams {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for FrugalTernaryMatmulParams {}
