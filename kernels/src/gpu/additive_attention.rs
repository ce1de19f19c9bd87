//! Additive attention on a GPU: `kernels/cuda/additive_attention.cu`, one block per sequence.
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::{cuda_err, launch_kernel};
use crate::additive_attention::plan::plan;
use crate::additive_attention::{AdditiveShape, ScoreForm};
use crate::error::Result;
use crate::params::FrugalAdditiveAttentionParams;
use crate::ptx::ADDITIVE_ATTENTION;

/// Device addresses of the inputs (`None`: no mask / bias).
#[derive(Debug, Clone, Copy)]
pub struct DevicePointers {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub mask: Option<u64>,
    pub wq: u64,
    pub bq: Option<u64>,
    pub wk: u64,
    pub bk: Option<u64>,
}

/// Runs the kernel; returns `u`, `pooled_q` and `pooled_k`.
///
/// # Safety
/// Every address is a live device buffer on `stream`'s context with the length `shape` and
/// `form` give (see [`crate::additive_attention::AdditiveInput::validate`]).
pub unsafe fn launch(
    stream: &Arc<CudaStream>,
    shape: AdditiveShape,
    form: ScoreForm,
    p: &DevicePointers,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>, CudaSlice<f32>)> {
    let plan = plan(shape)?;
    let alloc = |n: usize| {
        stream
            .alloc_zeros::<f32>(n)
            .map_err(cuda_err("allocating additive attention buffers"))
    };
    let (u, pooled_q, pooled_k) = (
        alloc(shape.len())?,
        alloc(shape.batch * shape.hidden())?,
        alloc(shape.batch * shape.hidden())?,
    );
    let scores = alloc(plan.workspace_len)?;
    {
        let (up, _a) = u.device_ptr(stream);
        let (pq, _b) = pooled_q.device_ptr(stream);
        let (pk, _c) = pooled_k.device_ptr(stream);
        let (sp, _d) = scores.device_ptr(stream);
        let null = |x: Option<u64>| x.map_or(std::ptr::null(), |a| a as *const f32);
        let params = FrugalAdditiveAttentionParams {
            q: p.q as *const f32,
            k: p.k as *const f32,
            v: p.v as *const f32,
            mask: null(p.mask),
            wq: p.wq as *const f32,
            bq: null(p.bq),
            wk: p.wk as *const f32,
            bk: null(p.bk),
            u: up as *mut f32,
            pooled_q: pq as *mut f32,
            pooled_k: pk as *mut f32,
            scores: sp as *mut f32,
            batch: shape.batch as i32,
            seq_len: shape.seq_len as i32,
            heads: shape.heads as i32,
            head_dim: shape.head_dim as i32,
            full_scores: i32::from(form == ScoreForm::Full),
        };
        let l = &plan.launch;
        // SAFETY: the caller vouches for the inputs; outputs and workspace are sized by the plan.
        unsafe {
            launch_kernel(
                stream,
                ADDITIVE_ATTENTION,
                l,
                &params,
                "launching additive attention",
            )
        }?;
    }
    Ok((u, pooled_q, pooled_k))
}

// SAFETY: a plain C struct of pointers and integers (`frugal_params.h`), passed by value.
unsafe impl cudarc::driver::DeviceRepr for FrugalAdditiveAttentionParams {}
