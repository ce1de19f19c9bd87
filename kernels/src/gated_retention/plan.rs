//! The CUDA launch plan of the gated retention: a block per (value-column tile, head, batch).
use super::{RetentionShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::{FRUGAL_RETENTION_DV_TILE, FRUGAL_RETENTION_MAX_DK, FRUGAL_RETENTION_THREADS};
use crate::plan::{KernelLaunch, MAX_GRID_YZ};

pub fn plan(shape: RetentionShape) -> Result<KernelLaunch> {
    let too_large = |what, value, limit| KernelError::TooLarge {
        kernel: KERNEL,
        what,
        value,
        limit,
    };
    if shape.dk > FRUGAL_RETENTION_MAX_DK as usize {
        return Err(too_large("dk", shape.dk, FRUGAL_RETENTION_MAX_DK as usize));
    }
    if shape.heads > MAX_GRID_YZ {
        return Err(too_large("heads", shape.heads, MAX_GRID_YZ));
    }
    if shape.batch > MAX_GRID_YZ {
        return Err(too_large("batch", shape.batch, MAX_GRID_YZ));
    }
    Ok(KernelLaunch {
        kernel: "gated_retention_f32",
        grid: [
            shape.dv.div_ceil(FRUGAL_RETENTION_DV_TILE as usize) as u32,
            shape.heads as u32,
            shape.batch as u32,
        ],
        block: [FRUGAL_RETENTION_THREADS, 1, 1],
        shared_bytes: 0,
    })
}
