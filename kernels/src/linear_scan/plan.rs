//! The CUDA launch plan of the linear scan (see `kernels/cuda/linear_scan.cu`).
use super::{ScanDtype, ScanShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::{
    FRUGAL_SCAN_CARRY_THREADS, FRUGAL_SCAN_CHANNELS_PER_BLOCK, FRUGAL_SCAN_CHUNK_LEN,
    FRUGAL_SCAN_SEGMENTS,
};
use crate::plan::{KernelLaunch, MAX_GRID_YZ};

/// What a scan of one shape launches, and the workspace it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearScanPlan {
    /// Chunks of `FRUGAL_SCAN_CHUNK_LEN` steps along time.
    pub num_chunks: u32,
    /// f32 elements of each of the two workspace buffers (`chunk_a`, `chunk_h`); 0 when there is
    /// a single chunk and no workspace is used.
    pub workspace_len: usize,
    /// In order: `summary`, `carry`, `apply`; only `apply` for a single chunk.
    pub launches: Vec<KernelLaunch>,
}

pub fn plan(shape: ScanShape, dtype: ScanDtype) -> Result<LinearScanPlan> {
    let chunk_len = FRUGAL_SCAN_CHUNK_LEN as usize;
    let num_chunks = shape.seq_len.div_ceil(chunk_len);
    for (what, value) in [
        ("seq_len / chunk length", num_chunks),
        ("batch", shape.batch),
    ] {
        if value > MAX_GRID_YZ {
            return Err(KernelError::TooLarge {
                kernel: KERNEL,
                what,
                value,
                limit: MAX_GRID_YZ,
            });
        }
    }
    let states = shape.batch * shape.channels;
    let carry_blocks = states.div_ceil(FRUGAL_SCAN_CARRY_THREADS as usize);
    if carry_blocks > u32::MAX as usize {
        return Err(KernelError::TooLarge {
            kernel: KERNEL,
            what: "batch * channels",
            value: states,
            limit: u32::MAX as usize,
        });
    }
    let tiles = [
        shape
            .channels
            .div_ceil(FRUGAL_SCAN_CHANNELS_PER_BLOCK as usize) as u32,
        num_chunks as u32,
        shape.batch as u32,
    ];
    let block = [FRUGAL_SCAN_CHANNELS_PER_BLOCK, FRUGAL_SCAN_SEGMENTS, 1];
    let (summary, apply) = match dtype {
        ScanDtype::F32 => (
            "linear_scan_chunk_summary_f32",
            "linear_scan_chunk_apply_f32",
        ),
        ScanDtype::Bf16 => (
            "linear_scan_chunk_summary_bf16",
            "linear_scan_chunk_apply_bf16",
        ),
    };
    let tile = |kernel| KernelLaunch {
        kernel,
        grid: tiles,
        block,
        shared_bytes: 0,
    };
    let launches = if num_chunks == 1 {
        vec![tile(apply)]
    } else {
        vec![
            tile(summary),
            KernelLaunch {
                kernel: "linear_scan_chunk_carry",
                grid: [carry_blocks as u32, 1, 1],
                block: [FRUGAL_SCAN_CARRY_THREADS, 1, 1],
                shared_bytes: 0,
            },
            tile(apply),
        ]
    };
    Ok(LinearScanPlan {
        num_chunks: num_chunks as u32,
        workspace_len: if num_chunks == 1 {
            0
        } else {
            states * num_chunks
        },
        launches,
    })
}
