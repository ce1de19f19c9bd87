//! The fused RG-LRU's launches on a device (`kernels/cuda/linear_scan.cu`, plan
//! [`crate::rg_lru::plan`]).
use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr};

use super::{cuda_err, launch_kernel};
use crate::error::Result;
use crate::linear_scan::ScanShape;
use crate::params::FrugalRgLruParams;
use crate::ptx::LINEAR_SCAN;

/// Runs the plan for `shape`, allocating the workspace; fills in `params`' geometry.
///
/// # Safety
/// Every pointer in `params` is a live f32 (or u8: reset, real) buffer on `stream`'s context of
/// the size the kernels read or write for `shape` (see `FrugalRgLruParams`).
pub unsafe fn launch_rg_lru(
    stream: &Arc<CudaStream>,
    shape: ScanShape,
    mut params: FrugalRgLruParams,
) -> Result<()> {
    let plan = crate::rg_lru::plan::plan(shape)?;
    let workspace = if plan.workspace_len > 0 {
        let alloc = || {
            stream
                .alloc_zeros::<f32>(plan.workspace_len)
                .map_err(cuda_err("allocating the RG-LRU workspace"))
        };
        Some((alloc()?, alloc()?))
    } else {
        None
    };
    let guards = workspace
        .as_ref()
        .map(|(a, h)| (a.device_ptr(stream), h.device_ptr(stream)));
    if let Some(((a, _), (h, _))) = &guards {
        params.scan.chunk_a = *a as *mut f32;
        params.scan.chunk_h = *h as *mut f32;
    }
    // ScanShape::new bounds every dimension by i32::MAX; the plan bounds the chunk count.
    params.scan.batch = shape.batch as i32;
    params.scan.seq_len = shape.seq_len as i32;
    params.scan.channels = shape.channels as i32;
    params.scan.num_chunks = plan.num_chunks as i32;
    for launch in &plan.launches {
        // SAFETY: the caller vouches for the buffers; the workspace lives until after this loop
        // and is freed in stream order. The carry pass takes the scan's own parameters.
        unsafe {
            if launch.kernel == "linear_scan_chunk_carry" {
                launch_kernel(
                    stream,
                    LINEAR_SCAN,
                    launch,
                    &params.scan,
                    "launching the RG-LRU",
                )
            } else {
                launch_kernel(stream, LINEAR_SCAN, launch, &params, "launching the RG-LRU")
            }
        }?;
    }
    Ok(())
}

// SAFETY: a plain C struct of pointers and integers (`frugal_params.h`), passed by value exactly as
// the kernel declares it.
unsafe impl cudarc::driver::DeviceRepr for FrugalRgLruParams {}
