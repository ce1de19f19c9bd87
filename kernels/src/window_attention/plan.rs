//! The CUDA launch plan of the window attention: a block per FRUGAL_SWA_WARPS queries of one head.
use super::{WindowShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::{FRUGAL_SWA_MAX_HEAD_DIM, FRUGAL_SWA_WARPS};
use crate::plan::{KernelLaunch, MAX_GRID_YZ};

pub fn plan(shape: WindowShape) -> Result<KernelLaunch> {
    shape.validate()?;
    let too_large = |what, value, limit| KernelError::TooLarge {
        kernel: KERNEL,
        what,
        value,
        limit,
    };
    if shape.head_dim > FRUGAL_SWA_MAX_HEAD_DIM as usize {
        return Err(too_large(
            "head_dim",
            shape.head_dim,
            FRUGAL_SWA_MAX_HEAD_DIM as usize,
        ));
    }
    if shape.heads > MAX_GRID_YZ {
        return Err(too_large("heads", shape.heads, MAX_GRID_YZ));
    }
    if shape.batch > MAX_GRID_YZ {
        return Err(too_large("batch", shape.batch, MAX_GRID_YZ));
    }
    Ok(KernelLaunch {
        kernel: "window_attention_f32",
        grid: [
            shape.q_len.div_ceil(FRUGAL_SWA_WARPS as usize) as u32,
            shape.heads as u32,
            shape.batch as u32,
        ],
        block: [FRUGAL_SWA_WARPS * 32, 1, 1],
        shared_bytes: 0,
    })
}
