//! The linear scan on a GPU: `kernels/cuda/linear_scan.cu` run with the plan of
//! [`crate::linear_scan::plan`].
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits};

use super::{cuda_err, launch_kernel, same_device};
use crate::error::Result;
use crate::linear_scan::plan::plan;
use crate::linear_scan::{check_len, ScanDtype, ScanElement, ScanShape, KERNEL};
use crate::params::FrugalLinearScanParams;
use crate::ptx::LINEAR_SCAN;

/// Scans device buffers: returns `h` `[batch, seq_len, channels]` and the final state
/// `[batch, channels]` (f32). Lengths are checked against `shape`.
pub fn linear_scan_gpu<T: ScanElement + DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    shape: ScanShape,
    a: &CudaSlice<T>,
    x: &CudaSlice<T>,
    h0: Option<&CudaSlice<f32>>,
    reset: Option<&CudaSlice<u8>>,
) -> Result<(CudaSlice<T>, CudaSlice<f32>)> {
    let ctx = stream.context();
    same_device(KERNEL, "a", a.context(), ctx)?;
    same_device(KERNEL, "x", x.context(), ctx)?;
    if let Some(h0) = h0 {
        same_device(KERNEL, "h0", h0.context(), ctx)?;
    }
    if let Some(reset) = reset {
        same_device(KERNEL, "reset", reset.context(), ctx)?;
    }
    check_len("a", a.len(), shape.len(), shape)?;
    check_len("x", x.len(), shape.len(), shape)?;
    if let Some(h0) = h0 {
        check_len("h0", h0.len(), shape.state_len(), shape)?;
    }
    if let Some(reset) = reset {
        check_len("reset", reset.len(), shape.batch * shape.seq_len, shape)?;
    }
    let h = stream
        .alloc_zeros::<T>(shape.len())
        .map_err(cuda_err("allocating h"))?;
    let h_last = stream
        .alloc_zeros::<f32>(shape.state_len())
        .map_err(cuda_err("allocating h_last"))?;
    {
        let (a_ptr, _ga) = a.device_ptr(stream);
        let (x_ptr, _gx) = x.device_ptr(stream);
        let h0_ptr = h0.map(|s| s.device_ptr(stream));
        let reset_ptr = reset.map(|s| s.device_ptr(stream));
        let (h_ptr, _gh) = h.device_ptr(stream);
        let (last_ptr, _gl) = h_last.device_ptr(stream);
        let params = scan_params(
            a_ptr,
            x_ptr,
            h0_ptr.as_ref().map(|(p, _)| *p),
            reset_ptr.as_ref().map(|(p, _)| *p),
            h_ptr,
            last_ptr,
        );
        // SAFETY: every pointer is a live device allocation on this stream's context whose length
        // was checked against `shape` above.
        unsafe { launch_linear_scan(stream, shape, T::DTYPE, params)? };
    }
    Ok((h, h_last))
}

/// The kernel's parameters for device buffers at these addresses (`None`: no `h0` / `reset`);
/// the launch fills in the shape and the workspace.
pub(crate) fn scan_params(
    a: u64,
    x: u64,
    h0: Option<u64>,
    reset: Option<u64>,
    h: u64,
    h_last: u64,
) -> FrugalLinearScanParams {
    FrugalLinearScanParams {
        a: a as *const c_void,
        x: x as *const c_void,
        h0: h0.map_or(std::ptr::null(), |p| p as *const f32),
        reset: reset.map_or(std::ptr::null(), |p| p as *const u8),
        h: h as *mut c_void,
        h_last: h_last as *mut f32,
        ..Default::default()
    }
}

/// Runs the plan on `params`' buffers, allocating the chunk workspace.
///
/// # Safety
/// `a`, `x`, `h` (and `h0`, `reset` when not null) and `h_last` are device pointers on `stream`'s
/// context to buffers of the sizes `shape` gives, in the dtype `dtype` says.
pub unsafe fn launch_linear_scan(
    stream: &Arc<CudaStream>,
    shape: ScanShape,
    dtype: ScanDtype,
    mut params: FrugalLinearScanParams,
) -> Result<()> {
    let plan = plan(shape, dtype)?;
    let workspace = if plan.workspace_len > 0 {
        let alloc = || {
            stream
                .alloc_zeros::<f32>(plan.workspace_len)
                .map_err(cuda_err("allocating the scan workspace"))
        };
        Some((alloc()?, alloc()?))
    } else {
        None
    };
    let guards = workspace
        .as_ref()
        .map(|(a, h)| (a.device_ptr(stream), h.device_ptr(stream)));
    if let Some(((a, _), (h, _))) = &guards {
        params.chunk_a = *a as *mut f32;
        params.chunk_h = *h as *mut f32;
    }
    // ScanShape::new bounds every dimension by i32::MAX; the plan bounds the chunk count.
    params.batch = shape.batch as i32;
    params.seq_len = shape.seq_len as i32;
    params.channels = shape.channels as i32;
    params.num_chunks = plan.num_chunks as i32;
    for launch in &plan.launches {
        // SAFETY: the caller vouches for the buffers; the workspace lives until after this loop
        // and is freed in stream order.
        unsafe {
            launch_kernel(
                stream,
                LINEAR_SCAN,
                launch,
                &params,
                "launching the linear scan",
            )
        }?;
    }
    drop(guards);
    Ok(())
}
