//! Sliding-window causal attention (YOCO's SWA self-decoder, docs/yoco.md §3) and plain causal
//! attention (`window = None`, YOCO's cross-decoder), with grouped KV heads and position offsets
//! for chunked prefill and decoding against cached keys:
//!
//! ```text
//! query i sits at position q_offset + i, key j at k_offset + j;
//! i sees j  iff  pos_j ≤ pos_i  and  pos_j > pos_i − W        (W keys including itself)
//! o_i = softmax_j(scale · q_i · k_j) v_j   over the visible j;  head h reads KV head h / (H / H_kv)
//! ```
//!
//! Layout: `q, o [batch, q_len, heads, head_dim]`, `k, v [batch, k_len, kv_heads, head_dim]` (what
//! the projections give, no transposes). f32. Memory O(T·W): no T×T score matrix anywhere.
//!
//! Forms: [`window_attention_reference`] (two passes per query, f64 sums),
//! [`window_attention_cpu`] (online softmax per query over its visible keys only, threaded over
//! query rows), and `kernels/cuda/window_attention.cu` (flash-style key tiles) with [`plan::plan`].
//!
//! [`positional_attention_cpu`] is the same attention with an explicit position per key and query
//! (ring buffers, padded batches), with its reference [`positional_attention_reference`].
mod fast;
mod op;
pub mod plan;
mod positional;
mod reference;
#[cfg(target_arch = "x86_64")]
mod rows_avx2;
#[cfg(target_arch = "x86_64")]
mod tiled;

pub use fast::window_attention_cpu;
pub use op::{positional_attention, positional_attention_tensors, window_attention, WindowSpec};
pub use positional::{positional_attention_cpu, positional_attention_reference, PositionalInput};
pub use reference::window_attention_reference;

use crate::error::{check_dims, check_len, KernelError, Result};

pub(crate) const KERNEL: &str = "window_attention";

/// Multiply-adds (of q·k) below which a CPU call runs on the calling thread: waking the pool
/// costs more than it saves (a small model's decode step).
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    pub batch: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Absolute position of query 0.
    pub q_offset: usize,
    /// Absolute position of key 0.
    pub k_offset: usize,
    /// Keys a query sees, itself included; `None`: every earlier key (causal).
    pub window: Option<usize>,
}

impl std::fmt::Display for WindowShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[batch {}, q_len {} at {}, k_len {} at {}, heads {} / kv {}, head_dim {}, window {}]",
            self.batch,
            self.q_len,
            self.q_offset,
            self.k_len,
            self.k_offset,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.window.map_or("none".into(), |w| w.to_string())
        )
    }
}

impl WindowShape {
    /// Validates the shape: non-empty, heads a multiple of kv heads, and every query's own
    /// position among the keys (each query sees at least itself).
    pub fn validate(&self) -> Result<()> {
        check_dims(
            KERNEL,
            &[
                ("batch", self.batch),
                ("q_len", self.q_len),
                ("k_len", self.k_len),
                ("heads", self.heads),
                ("kv_heads", self.kv_heads),
                ("head_dim", self.head_dim),
                ("window", self.window.unwrap_or(1)),
            ],
        )?;
        let invalid = |message: String| KernelError::Invalid {
            kernel: KERNEL,
            arg: "shape",
            message,
        };
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(invalid(format!(
                "heads {} is not a multiple of kv_heads {}",
                self.heads, self.kv_heads
            )));
        }
        if self.q_offset < self.k_offset || self.q_offset + self.q_len > self.k_offset + self.k_len
        {
            return Err(invalid(format!(
                "queries at positions {}..{} are not all among the keys at {}..{} ({self})",
                self.q_offset,
                self.q_offset + self.q_len,
                self.k_offset,
                self.k_offset + self.k_len
            )));
        }
        let end = (self.q_offset + self.q_len).max(self.k_offset + self.k_len);
        if end > i32::MAX as usize {
            return Err(KernelError::TooLarge {
                kernel: KERNEL,
                what: "last position",
                value: end,
                limit: i32::MAX as usize,
            });
        }
        Ok(())
    }

    pub fn q_elems(&self) -> usize {
        self.batch * self.q_len * self.heads * self.head_dim
    }

    pub fn kv_elems(&self) -> usize {
        self.batch * self.k_len * self.kv_heads * self.head_dim
    }

    /// The visible keys of query `i` as indices into `k`: `lo..=hi`.
    pub fn visible(&self, i: usize) -> (usize, usize) {
        let pos = self.q_offset + i;
        let lo = match self.window {
            Some(w) => (pos + 1).saturating_sub(w).max(self.k_offset),
            None => self.k_offset,
        };
        (lo - self.k_offset, pos - self.k_offset)
    }
}

/// One call's inputs, on the host. Keys and values are f32, or (`E` = `half::f16` or
/// `half::bf16`) a half-precision KV cache that [`window_attention_cpu`] widens as it reads.
#[derive(Debug, Clone, Copy)]
pub struct WindowInput<'a, E = f32> {
    pub shape: WindowShape,
    pub q: &'a [f32],
    pub k: &'a [E],
    pub v: &'a [E],
    /// Multiplies the scores (usually `head_dim^-0.5`).
    pub scale: f32,
}

impl<E> WindowInput<'_, E> {
    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        s.validate()?;
        check_len(KERNEL, "q", self.q.len(), s.q_elems(), &s)?;
        check_len(KERNEL, "k", self.k.len(), s.kv_elems(), &s)?;
        check_len(KERNEL, "v", self.v.len(), s.kv_elems(), &s)?;
        Ok(())
    }
}

/// One block's step of the online softmax for one query: scales the block's raw `scores` and
/// replaces them by `exp(score − max)` with `max` raised to the block's if it is higher (the
/// output `acc` and the normaliser `total` rescaled once for it), then adds their sum to
/// `total`. The caller adds the weighted values to `acc`.
#[inline(always)]
fn softmax_block(scores: &mut [f32], scale: f32, max: &mut f32, total: &mut f32, acc: &mut [f32]) {
    let block_max = scale_and_max(scores, scale);
    if block_max > *max {
        // exp clamps its argument: from -inf (nothing seen yet) it gives ~1e-38, which
        // multiplies zeros.
        let rescale = crate::cpu_math::exp(*max - block_max);
        *total *= rescale;
        acc.iter_mut().for_each(|a| *a *= rescale);
        *max = block_max;
    }
    *total += exp_and_sum(scores, *max);
}

/// Multiplies `xs` by `scale`; their max. Eight lanes apart, so the loop vectorises (a single
/// running max or sum is a chain the compiler may not reorder).
#[inline(always)]
fn scale_and_max(xs: &mut [f32], scale: f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut eight = xs.chunks_exact_mut(8);
    for x in &mut eight {
        for (l, x) in lanes.iter_mut().zip(x) {
            *x *= scale;
            *l = if *x > *l { *x } else { *l };
        }
    }
    let mut m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in eight.into_remainder() {
        *x *= scale;
        m = m.max(*x);
    }
    m
}

/// Replaces `xs` by `exp(x − m)`; their sum (eight lanes apart, as above).
#[inline(always)]
fn exp_and_sum(xs: &mut [f32], m: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut eight = xs.chunks_exact_mut(8);
    for x in &mut eight {
        for (l, x) in lanes.iter_mut().zip(x) {
            *x = crate::cpu_math::exp(*x - m);
            *l += *x;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for x in eight.into_remainder() {
        *x = crate::cpu_math::exp(*x - m);
        sum += *x;
    }
    sum
}
