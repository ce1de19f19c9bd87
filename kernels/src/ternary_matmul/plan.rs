//! The CUDA launch plan of the ternary matmul: the activation quantisation (a block per token),
//! then the GEMV (a warp per output row, once per token) for a few tokens or the tiled GEMM.
use super::{TernaryShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::{
    FRUGAL_TERNARY_GEMM_THREADS, FRUGAL_TERNARY_GEMM_TILE, FRUGAL_TERNARY_GEMV_MAX_TOKENS,
    FRUGAL_TERNARY_GEMV_WARPS, FRUGAL_TERNARY_QUANT_THREADS,
};
use crate::plan::{KernelLaunch, MAX_GRID_YZ};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TernaryPlan {
    pub quantize: KernelLaunch,
    pub matmul: KernelLaunch,
}

pub fn plan(shape: TernaryShape) -> Result<TernaryPlan> {
    let too_large = |what, value, limit| KernelError::TooLarge {
        kernel: KERNEL,
        what,
        value,
        limit,
    };
    if shape.m > u32::MAX as usize {
        return Err(too_large("m (tokens)", shape.m, u32::MAX as usize));
    }
    let quantize = KernelLaunch {
        kernel: "ternary_quantize_f32",
        grid: [shape.m as u32, 1, 1],
        block: [FRUGAL_TERNARY_QUANT_THREADS, 1, 1],
        shared_bytes: 0,
    };
    let matmul = if shape.m <= FRUGAL_TERNARY_GEMV_MAX_TOKENS as usize {
        KernelLaunch {
            kernel: "ternary_gemv",
            grid: [
                shape.n.div_ceil(FRUGAL_TERNARY_GEMV_WARPS as usize) as u32,
                shape.m as u32,
                1,
            ],
            block: [FRUGAL_TERNARY_GEMV_WARPS * 32, 1, 1],
            shared_bytes: 0,
        }
    } else {
        let tile = FRUGAL_TERNARY_GEMM_TILE as usize;
        let token_tiles = shape.m.div_ceil(tile);
        if token_tiles > MAX_GRID_YZ {
            return Err(too_large("m (tokens)", shape.m, MAX_GRID_YZ * tile));
        }
        KernelLaunch {
            kernel: "ternary_gemm",
            grid: [shape.n.div_ceil(tile) as u32, token_tiles as u32, 1],
            block: [FRUGAL_TERNARY_GEMM_THREADS, 1, 1],
            shared_bytes: 0,
        }
    };
    Ok(TernaryPlan { quantize, matmul })
}
