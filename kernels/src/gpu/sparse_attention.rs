//! Smart Bird's kernels on a GPU: `kernels/cuda/sparse_attention.cu` with the plans of
//! [`crate::sparse_attention::plan`].
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtr};

use super::{cuda_err, launch_kernel};
use crate::error::{check_len, Result};
use crate::params::{FrugalSketchTopkParams, FrugalSparseAttentionParams};
use crate::ptx::SPARSE_ATTENTION;
use crate::sparse_attention::plan::{attention_plan, topk_plan};
use crate::sparse_attention::{SparseShape, KERNEL};

/// `indices [batch, heads, seq_len, keys]` from the sketch's `log_probs [batch, seq_len,
/// seq_len]` (see [`crate::sparse_attention::SketchTopk`]; `shape.head_dim` is unused).
pub fn sketch_topk_gpu(
    stream: &Arc<CudaStream>,
    shape: SparseShape,
    log_probs: &impl DevicePtr<f32>,
    mask: Option<&CudaView<'_, u8>>,
    gumbel_seed: Option<u64>,
    include_self: bool,
) -> Result<CudaSlice<i32>> {
    let l = topk_plan(shape)?;
    let n = shape.seq_len;
    check_len(
        KERNEL,
        "log_probs",
        log_probs.len(),
        shape.batch * n * n,
        &shape,
    )?;
    if let Some(m) = mask {
        check_len(KERNEL, "mask", m.len(), shape.batch * n, &shape)?;
    }
    let out = stream
        .alloc_zeros::<i32>(shape.index_len())
        .map_err(cuda_err("allocating indices"))?;
    {
        let (lp, _a) = log_probs.device_ptr(stream);
        let mp = mask.map(|m| m.device_ptr(stream));
        let (op, _b) = out.device_ptr(stream);
        let params = FrugalSketchTopkParams {
            log_probs: lp as *const f32,
            mask: mp
                .as_ref()
                .map_or(std::ptr::null(), |(p, _)| *p as *const u8),
            indices: op as *mut i32,
            seed: gumbel_seed.unwrap_or(0),
            batch: shape.batch as i32,
            seq_len: n as i32,
            heads: shape.heads as i32,
            keys: shape.keys as i32,
            gumbel: i32::from(gumbel_seed.is_some()),
            include_self: i32::from(include_self),
        };
        // SAFETY: buffers are length-checked; the output is allocated for the shape.
        unsafe {
            launch_kernel(
                stream,
                SPARSE_ATTENTION,
                &l,
                &params,
                "launching sketch top-k",
            )
        }?;
    }
    Ok(out)
}

/// `o [batch, seq_len, heads, head_dim]` over the gathered keys.
pub fn sparse_attention_gpu(
    stream: &Arc<CudaStream>,
    shape: SparseShape,
    q: &impl DevicePtr<f32>,
    k: &impl DevicePtr<f32>,
    v: &impl DevicePtr<f32>,
    indices: &impl DevicePtr<i32>,
    scale: f32,
) -> Result<CudaSlice<f32>> {
    let l = attention_plan(shape)?;
    check_len(KERNEL, "q", q.len(), shape.elems(), &shape)?;
    check_len(KERNEL, "k", k.len(), shape.elems(), &shape)?;
    check_len(KERNEL, "v", v.len(), shape.elems(), &shape)?;
    check_len(KERNEL, "indices", indices.len(), shape.index_len(), &shape)?;
    let o = stream
        .alloc_zeros::<f32>(shape.elems())
        .map_err(cuda_err("allocating o"))?;
    {
        let (qp, _a) = q.device_ptr(stream);
        let (kp, _b) = k.device_ptr(stream);
        let (vp, _c) = v.device_ptr(stream);
        let (ip, _d) = indices.device_ptr(stream);
        let (op, _e) = o.device_ptr(stream);
        let params = FrugalSparseAttentionParams {
            q: qp as *const f32,
            k: kp as *const f32,
            v: vp as *const f32,
            indices: ip as *const i32,
            o: op as *mut f32,
            scale,
            batch: shape.batch as i32,
            seq_len: shape.seq_len as i32,
            heads: shape.heads as i32,
            head_dim: shape.head_dim as i32,
            keys: shape.keys as i32,
        };
        // SAFETY: buffers are length-checked; the kernel treats an index outside 0..seq_len as an
        // empty slot, so no index reads out of bounds; the output is allocated for the shape.
        unsafe {
            launch_kernel(
                stream,
                SPARSE_ATTENTION,
                &l,
                &params,
                "launching sparse attention",
            )
        }?;
    }
    Ok(o)
}

// SAFETY: plain C structs of pointers, integers and floats (`frugal_params.h`), by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalSparseAttentionParams {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for FrugalSketchTopkParams {}
