//! Window attention on a GPU: `kernels/cuda/window_attention.cu` with the plan of
//! [`crate::window_attention::plan`].
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::{cuda_err, launch_kernel};
use crate::error::{check_len, Result};
use crate::params::FrugalWindowAttentionParams;
use crate::ptx::WINDOW_ATTENTION;
use crate::window_attention::plan::plan;
use crate::window_attention::{WindowShape, KERNEL};

/// `o [batch, q_len, heads, head_dim]` for device buffers `q`, `k`, `v` (lengths checked).
pub fn window_attention_gpu(
    stream: &Arc<CudaStream>,
    shape: WindowShape,
    q: &impl DevicePtr<f32>,
    k: &impl DevicePtr<f32>,
    v: &impl DevicePtr<f32>,
    scale: f32,
) -> Result<CudaSlice<f32>> {
    let l = plan(shape)?;
    check_len(KERNEL, "q", q.len(), shape.q_elems(), &shape)?;
    check_len(KERNEL, "k", k.len(), shape.kv_elems(), &shape)?;
    check_len(KERNEL, "v", v.len(), shape.kv_elems(), &shape)?;
    let o = stream
        .alloc_zeros::<f32>(shape.q_elems())
        .map_err(cuda_err("allocating o"))?;
    {
        let (qp, _a) = q.device_ptr(stream);
        let (kp, _b) = k.device_ptr(stream);
        let (vp, _c) = v.device_ptr(stream);
        let (op, _d) = o.device_ptr(stream);
        let params = FrugalWindowAttentionParams {
            q: qp as *const f32,
            k: kp as *const f32,
            v: vp as *const f32,
            o: op as *mut f32,
            scale,
            batch: shape.batch as i32,
            q_len: shape.q_len as i32,
            k_len: shape.k_len as i32,
            heads: shape.heads as i32,
            kv_heads: shape.kv_heads as i32,
            head_dim: shape.head_dim as i32,
            q_offset: shape.q_offset as i32,
            k_offset: shape.k_offset as i32,
            window: shape.window.map_or(0, |w| w.min(i32::MAX as usize) as i32),
        };
        // SAFETY: buffers are length-checked against the validated shape; o is allocated for it.
        unsafe {
            launch_kernel(
                stream,
                WINDOW_ATTENTION,
                &l,
                &params,
                "launching window attention",
            )
        }?;
    }
    Ok(o)
}

// SAFETY: a plain C struct of pointers, integers and a float (`frugal_params.h`), by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalWindowAttentionParams {}
