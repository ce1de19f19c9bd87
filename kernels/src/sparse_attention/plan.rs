//! CUDA launch plans: sparse attention (a warp per row, FRUGAL_SPARSE_WARPS rows per block) and
//! the top-K selection (a block per row, its scores in dynamic shared memory).
use super::{SparseShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::{
    FRUGAL_SPARSE_MAX_HEAD_DIM, FRUGAL_SPARSE_MAX_KEYS, FRUGAL_SPARSE_WARPS, FRUGAL_TOPK_THREADS,
};
use crate::plan::KernelLaunch;

/// Dynamic shared memory without opting in.
const MAX_SHARED_BYTES: usize = 48 * 1024;

fn too_large(what: &'static str, value: usize, limit: usize) -> KernelError {
    KernelError::TooLarge {
        kernel: KERNEL,
        what,
        value,
        limit,
    }
}

fn grid_x(rows: usize, per_block: usize) -> Result<u32> {
    let blocks = rows.div_ceil(per_block);
    u32::try_from(blocks).map_err(|_| too_large("batch x heads x seq_len", rows, u32::MAX as usize))
}

pub fn attention_plan(shape: SparseShape) -> Result<KernelLaunch> {
    if shape.keys > FRUGAL_SPARSE_MAX_KEYS as usize {
        return Err(too_large(
            "keys",
            shape.keys,
            FRUGAL_SPARSE_MAX_KEYS as usize,
        ));
    }
    if shape.head_dim > FRUGAL_SPARSE_MAX_HEAD_DIM as usize {
        return Err(too_large(
            "head_dim",
            shape.head_dim,
            FRUGAL_SPARSE_MAX_HEAD_DIM as usize,
        ));
    }
    let rows = shape.batch * shape.heads * shape.seq_len;
    Ok(KernelLaunch {
        kernel: "sparse_attention_f32",
        grid: [grid_x(rows, FRUGAL_SPARSE_WARPS as usize)?, 1, 1],
        block: [FRUGAL_SPARSE_WARPS * 32, 1, 1],
        shared_bytes: 0,
    })
}

pub fn topk_plan(shape: SparseShape) -> Result<KernelLaunch> {
    let shared = shape.seq_len * 4;
    if shared > MAX_SHARED_BYTES {
        return Err(too_large(
            "seq_len (the row's scores in shared memory)",
            shape.seq_len,
            MAX_SHARED_BYTES / 4,
        ));
    }
    let rows = shape.batch * shape.heads * shape.seq_len;
    Ok(KernelLaunch {
        kernel: "sketch_topk",
        grid: [grid_x(rows, 1)?, 1, 1],
        block: [FRUGAL_TOPK_THREADS, 1, 1],
        shared_bytes: shared as u32,
    })
}
