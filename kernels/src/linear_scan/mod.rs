//! Linear-recurrence scan: `h_t = a_t ⊙ h_{t-1} + x_t` over time, independently per channel.
//!
//! This is the recurrence under the RG-LRU (Griffin §2.4, docs/griffin.md §3: the model computes
//! `a_t` and `x_t = sqrt(1 - a_t²) ⊙ i_t ⊙ x_t` and hands both here) and Hawk. Layout is
//! `[batch, seq_len, channels]`, channels contiguous. Options:
//! - an initial state `h0` `[batch, channels]` (f32), zeros when absent: continues a cached state,
//!   which makes chunked prefill equal to one-shot prefill;
//! - a per-position `reset` `[batch, seq_len]`: where nonzero the state restarts, `h_t = x_t`
//!   (a document start, RG-LRU's `segment_pos == 0`).
//!
//! Inputs are f32 or bf16; accumulation is always f32, `h` is returned in the input dtype and the
//! final state in f32 (the recurrent state is cached in f32 whatever the activation dtype).
//!
//! Forms: [`linear_scan_reference`] (the obvious loop), [`linear_scan_cpu`] (the fast CPU path),
//! [`plan::plan`] + `kernels/cuda/linear_scan.cu` (CUDA, see [`crate::gpu::linear_scan`]), and
//! [`op::linear_scan`], the candle op on tensors.
mod fast;
pub mod op;
pub mod plan;
mod reference;

pub use fast::linear_scan_cpu;
pub use op::linear_scan;
pub use reference::linear_scan_reference;

use crate::error::{check_dims, Result};

pub(crate) const KERNEL: &str = "linear_scan";

/// Element types the scan reads and writes. Arithmetic is f32.
pub trait ScanElement: Copy + Send + Sync + 'static {
    const DTYPE: ScanDtype;
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

/// The activation dtype of a scan, which picks the CUDA kernel variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanDtype {
    F32,
    Bf16,
}

impl ScanDtype {
    pub fn suffix(self) -> &'static str {
        match self {
            ScanDtype::F32 => "f32",
            ScanDtype::Bf16 => "bf16",
        }
    }
}

impl ScanElement for f32 {
    const DTYPE: ScanDtype = ScanDtype::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

// bf16 is the top half of an f32. Branch-free conversions, so the fast path vectorises them;
// bit-identical to `half`'s (tested) and to CUDA's `__float2bfloat16`.
impl ScanElement for half::bf16 {
    const DTYPE: ScanDtype = ScanDtype::Bf16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        // Round to nearest, ties to even, as torch's .to(bfloat16); NaN stays a quiet NaN.
        let u = v.to_bits();
        let rounded = (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16;
        let nan = ((u >> 16) | 0x40) as u16;
        let is_nan = (u & 0x7fff_ffff) > 0x7f80_0000;
        half::bf16::from_bits(if is_nan { nan } else { rounded })
    }
}

/// `[batch, seq_len, channels]`, each at least 1 and small enough for the kernels' 32-bit
/// per-dimension indexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    pub batch: usize,
    pub seq_len: usize,
    pub channels: usize,
}

impl ScanShape {
    pub fn new(batch: usize, seq_len: usize, channels: usize) -> Result<Self> {
        check_dims(
            KERNEL,
            &[
                ("batch", batch),
                ("seq_len", seq_len),
                ("channels", channels),
            ],
        )?;
        Ok(ScanShape {
            batch,
            seq_len,
            channels,
        })
    }

    /// Elements of `a`, `x` and `h`.
    pub fn len(&self) -> usize {
        self.batch * self.seq_len * self.channels
    }

    /// Never true: a shape is validated non-empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements of `h0` and of the final state.
    pub fn state_len(&self) -> usize {
        self.batch * self.channels
    }
}

impl std::fmt::Display for ScanShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[batch {}, seq_len {}, channels {}]",
            self.batch, self.seq_len, self.channels
        )
    }
}

/// The inputs of one scan, on the host.
#[derive(Debug, Clone, Copy)]
pub struct ScanInput<'a, T> {
    pub shape: ScanShape,
    /// `[batch, seq_len, channels]` decay.
    pub a: &'a [T],
    /// `[batch, seq_len, channels]` input.
    pub x: &'a [T],
    /// `[batch, channels]` initial state; zeros when `None`.
    pub h0: Option<&'a [f32]>,
    /// `[batch, seq_len]`, nonzero where the state restarts.
    pub reset: Option<&'a [u8]>,
}

impl<T> ScanInput<'_, T> {
    /// Checks every buffer's length against the shape.
    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        check_len("a", self.a.len(), s.len(), s)?;
        check_len("x", self.x.len(), s.len(), s)?;
        if let Some(h0) = self.h0 {
            check_len("h0", h0.len(), s.state_len(), s)?;
        }
        if let Some(reset) = self.reset {
            check_len("reset", reset.len(), s.batch * s.seq_len, s)?;
        }
        Ok(())
    }
}

/// The scan's length check (see [`crate::error::check_len`]).
pub(crate) fn check_len(
    arg: &'static str,
    found: usize,
    expected: usize,
    shape: ScanShape,
) -> Result<()> {
    crate::error::check_len(KERNEL, arg, found, expected, &shape)
}

/// A scan's result: every `h_t` in the input dtype, and the final state in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOutput<T> {
    /// `[batch, seq_len, channels]`.
    pub h: Vec<T>,
    /// `[batch, channels]`: `h_{T-1}` before rounding to the input dtype.
    pub h_last: Vec<f32>,
}
