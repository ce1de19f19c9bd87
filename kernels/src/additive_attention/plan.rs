//! The CUDA launch plan of the additive attention: one block per sequence.
use super::{AdditiveShape, KERNEL};
use crate::error::{KernelError, Result};
use crate::params::FRUGAL_ADDITIVE_THREADS;
use crate::plan::KernelLaunch;

/// Dynamic shared memory a block may use without opting in (48 KiB).
const MAX_SHARED_BYTES: usize = 48 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditivePlan {
    /// f32 elements of the score workspace `[batch, heads, seq_len]`.
    pub workspace_len: usize,
    pub launch: KernelLaunch,
}

pub fn plan(shape: AdditiveShape) -> Result<AdditivePlan> {
    // pooled_q, pooled_k [hidden], softmax stats [2 heads], reduction scratch [warps].
    let shared = (2 * shape.hidden() + 2 * shape.heads + FRUGAL_ADDITIVE_THREADS as usize / 32) * 4;
    if shared > MAX_SHARED_BYTES {
        return Err(KernelError::TooLarge {
            kernel: KERNEL,
            what: "shared memory bytes (2 * hidden + 2 * heads floats)",
            value: shared,
            limit: MAX_SHARED_BYTES,
        });
    }
    if shape.batch > u32::MAX as usize {
        return Err(KernelError::TooLarge {
            kernel: KERNEL,
            what: "batch",
            value: shape.batch,
            limit: u32::MAX as usize,
        });
    }
    Ok(AdditivePlan {
        workspace_len: shape.batch * shape.heads * shape.seq_len,
        launch: KernelLaunch {
            kernel: "additive_attention_f32",
            grid: [shape.batch as u32, 1, 1],
            block: [FRUGAL_ADDITIVE_THREADS, 1, 1],
            shared_bytes: shared as u32,
        },
    })
}
