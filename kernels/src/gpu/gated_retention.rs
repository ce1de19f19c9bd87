//! Gated retention on a GPU: `kernels/cuda/gated_retention.cu` with the plan of
//! [`crate::gated_retention::plan`].
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtr};

use super::{cuda_err, launch_kernel};
use crate::error::{check_len, Result};
use crate::gated_retention::plan::plan;
use crate::gated_retention::{RetentionShape, KERNEL};
use crate::params::FrugalGatedRetentionParams;
use crate::ptx::GATED_RETENTION;

/// `o [batch, seq_len, heads, dv]` and the final state `[batch, heads, dk, dv]` for device
/// buffers (lengths checked; `state: None` starts from zeros).
pub fn gated_retention_gpu(
    stream: &Arc<CudaStream>,
    shape: RetentionShape,
    q: &impl DevicePtr<f32>,
    k: &impl DevicePtr<f32>,
    v: &impl DevicePtr<f32>,
    log_decay: &impl DevicePtr<f32>,
    state: Option<&CudaView<'_, f32>>,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let l = plan(shape)?;
    let rows = shape.batch * shape.seq_len * shape.heads;
    check_len(KERNEL, "q", q.len(), rows * shape.dk, &shape)?;
    check_len(KERNEL, "k", k.len(), rows * shape.dk, &shape)?;
    check_len(KERNEL, "v", v.len(), rows * shape.dv, &shape)?;
    check_len(KERNEL, "log_decay", log_decay.len(), rows, &shape)?;
    if let Some(s) = state {
        check_len(KERNEL, "state", s.len(), shape.state_len(), &shape)?;
    }
    let alloc = |n| {
        stream
            .alloc_zeros::<f32>(n)
            .map_err(cuda_err("allocating gated retention outputs"))
    };
    let (o, state_out) = (alloc(rows * shape.dv)?, alloc(shape.state_len())?);
    {
        let (qp, _a) = q.device_ptr(stream);
        let (kp, _b) = k.device_ptr(stream);
        let (vp, _c) = v.device_ptr(stream);
        let (gp, _d) = log_decay.device_ptr(stream);
        let sp = state.map(|s| s.device_ptr(stream));
        let (op, _e) = o.device_ptr(stream);
        let (so, _f) = state_out.device_ptr(stream);
        let params = FrugalGatedRetentionParams {
            q: qp as *const f32,
            k: kp as *const f32,
            v: vp as *const f32,
            log_decay: gp as *const f32,
            state_in: sp
                .as_ref()
                .map_or(std::ptr::null(), |(p, _)| *p as *const f32),
            o: op as *mut f32,
            state_out: so as *mut f32,
            batch: shape.batch as i32,
            seq_len: shape.seq_len as i32,
            heads: shape.heads as i32,
            dk: shape.dk as i32,
            dv: shape.dv as i32,
        };
        // SAFETY: buffers are length-checked against the shape; outputs are allocated for it.
        unsafe {
            launch_kernel(
                stream,
                GATED_RETENTION,
                &l,
                &params,
                "launching gated retention",
            )
        }?;
    }
    Ok((o, state_out))
}

// SAFETY: a plain C struct of pointers and integers (`frugal_params.h`), by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalGatedRetentionParams {}
