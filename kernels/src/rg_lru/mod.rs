//! Griffin's RG-LRU from its gate pre-activations to its output, fused into one pass over time
//! (Griffin §2.4; docs/griffin.md §3; HF `RecurrentGemmaRglru`):
//!
//! ```text
//! i_t = σ(gx_t + bx),  r_t = σ(ga_t + ba)
//! log a_t = −8 · r_t · softplus(Λ)
//! h_t = a_t ⊙ h_{t−1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)      (h_t = i_t ⊙ x_t where a sequence starts)
//! y_t = h_t ⊙ gelu_tanh(branch_t)                          (the recurrent block's GeLU branch)
//! ```
//!
//! `gx`, `ga` are the block-diagonal gate products (a matmul, done before). At padding the step is
//! the identity: the state passes through unchanged. Done as tensor ops this is a dozen passes
//! over `[B, T, W]` and a scan; here it is one read of each input and one write of `y`, channels
//! vectorised and (batch, channel block) tasks threaded. On a GPU the same single pass is the
//! scan kernel with the RG-LRU's loads and stores (`rg_lru_chunk_*` in
//! `kernels/cuda/linear_scan.cu`, plan [`plan::plan`]).
mod gates;
mod op;
pub mod plan;

pub use gates::block_diagonal_gates;
pub use op::{rg_lru, rg_lru_tensors, RgLruParams, RgLruSteps};

use rayon::prelude::*;

use crate::cpu::SharedMut;
use crate::cpu_math::{exp, gelu_tanh, sigmoid, simd};
use crate::error::{KernelError, Result};

/// Inputs, row-major `[batch, seq_len, width]` unless said otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RgLruInput<'a> {
    pub batch: usize,
    pub seq_len: usize,
    pub width: usize,
    /// The recurrence's input (the conv's output).
    pub x: &'a [f32],
    /// Input-gate pre-activation, without its bias.
    pub gate_x: &'a [f32],
    /// Recurrence-gate pre-activation, without its bias.
    pub gate_a: &'a [f32],
    /// `[width]` each.
    pub gate_x_bias: &'a [f32],
    pub gate_a_bias: &'a [f32],
    /// `[width]`: softplus(Λ).
    pub softplus_a: &'a [f32],
    /// `[batch, width]`: the state before this chunk (zeros when absent).
    pub h0: Option<&'a [f32]>,
    /// `[batch, seq_len]`: true where a sequence starts (the state resets).
    pub reset: &'a [bool],
    /// `[batch, seq_len]`: false at padding; all real when absent.
    pub real: Option<&'a [bool]>,
    /// The GeLU branch's pre-activation, which multiplies the output; `y = h` when absent.
    pub branch: Option<&'a [f32]>,
}

/// `y` `[batch, seq_len, width]` and the last state `[batch, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RgLruOutput {
    pub y: Vec<f32>,
    pub h_last: Vec<f32>,
}

impl RgLruInput<'_> {
    pub fn validate(&self) -> Result<()> {
        // Checked: the sizes come from callers, and the fast path writes through raw pointers
        // within them.
        let n = crate::error::checked_elements(
            "rg_lru",
            &[
                ("batch", self.batch),
                ("seq_len", self.seq_len),
                ("width", self.width),
            ],
        )?;
        let bad = |arg: &'static str, message: String| {
            Err(KernelError::Invalid {
                kernel: "rg_lru",
                arg,
                message,
            })
        };
        if n == 0 {
            return bad("shape", "batch, seq_len and width must be positive".into());
        }
        let expect = |arg, len: usize, want: usize, what: &str| {
            if len != want {
                return bad(arg, format!("has {len} elements, expected {want} ({what})"));
            }
            Ok(())
        };
        let btw = "[batch, seq_len, width]";
        expect("x", self.x.len(), n, btw)?;
        expect("gate_x", self.gate_x.len(), n, btw)?;
        expect("gate_a", self.gate_a.len(), n, btw)?;
        expect("gate_x_bias", self.gate_x_bias.len(), self.width, "[width]")?;
        expect("gate_a_bias", self.gate_a_bias.len(), self.width, "[width]")?;
        expect("softplus_a", self.softplus_a.len(), self.width, "[width]")?;
        let bt = self.batch * self.seq_len;
        expect("reset", self.reset.len(), bt, "[batch, seq_len]")?;
        if let Some(h0) = self.h0 {
            expect("h0", h0.len(), self.batch * self.width, "[batch, width]")?;
        }
        if let Some(real) = self.real {
            expect("real", real.len(), bt, "[batch, seq_len]")?;
        }
        if let Some(branch) = self.branch {
            expect("branch", branch.len(), n, btw)?;
        }
        Ok(())
    }
}

/// The plain reference: one channel and one step at a time, in f64 with libm's functions.
pub fn rg_lru_reference(input: &RgLruInput<'_>) -> Result<RgLruOutput> {
    input.validate()?;
    let (bsz, t_len, w) = (input.batch, input.seq_len, input.width);
    let mut y = vec![0.0f32; bsz * t_len * w];
    let mut h_last = vec![0.0f32; bsz * w];
    for b in 0..bsz {
        for c in 0..w {
            let mut h = input.h0.map_or(0.0, |h0| h0[b * w + c] as f64);
            for t in 0..t_len {
                let bt = b * t_len + t;
                let k = bt * w + c;
                let real = input.real.is_none_or(|r| r[bt]);
                if real {
                    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                    let i = sig(input.gate_x[k] as f64 + input.gate_x_bias[c] as f64);
                    let r = sig(input.gate_a[k] as f64 + input.gate_a_bias[c] as f64);
                    let log_a = -8.0 * r * input.softplus_a[c] as f64;
                    let a = log_a.exp();
                    let xn = i * input.x[k] as f64;
                    h = if input.reset[bt] {
                        xn
                    } else {
                        a * h + (1.0 - a * a).sqrt() * xn
                    };
                }
                let gate = input.branch.map_or(1.0, |br| {
                    let v = br[k] as f64;
                    let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
                    0.5 * v * (1.0 + u.tanh())
                });
                y[k] = (h * gate) as f32;
            }
            h_last[b * w + c] = h as f32;
        }
    }
    Ok(RgLruOutput { y, h_last })
}

/// Channels per task: 64 f32 states, eight AVX2 registers.
const CHANNEL_BLOCK: usize = 64;

/// The fast path: same contract and results (within f32 rounding) as [`rg_lru_reference`].
pub fn rg_lru_cpu(input: &RgLruInput<'_>) -> Result<RgLruOutput> {
    input.validate()?;
    let (bsz, w) = (input.batch, input.width);
    let mut y = vec![0.0f32; bsz * input.seq_len * w];
    let mut h_last = vec![0.0f32; bsz * w];
    let blocks = w.div_ceil(CHANNEL_BLOCK);
    let (y_ptr, h_ptr) = (SharedMut(y.as_mut_ptr()), SharedMut(h_last.as_mut_ptr()));
    let task = |task: usize| {
        let (b, blk) = (task / blocks, task % blocks);
        let c0 = blk * CHANNEL_BLOCK;
        let width = CHANNEL_BLOCK.min(w - c0);
        // SAFETY: task (b, blk) writes only y[b, :, c0..c0 + width] and h_last[b, c0..c0 + width];
        // tasks are distinct, so the writes are disjoint, and both buffers outlive the tasks.
        simd(
            #[inline(always)]
            || unsafe { run_block(input, b, c0, width, y_ptr, h_ptr) },
        )
    };
    let tasks = bsz * blocks;
    if y.len() >= crate::cpu_math::PARALLEL_MIN && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    Ok(RgLruOutput { y, h_last })
}

/// # Safety
/// The caller gives this call exclusive access to `y[b, :, c0..c0 + width]` and
/// `h_last[b, c0..c0 + width]`, and `input` is validated.
#[inline(always)]
unsafe fn run_block(
    input: &RgLruInput<'_>,
    b: usize,
    c0: usize,
    width: usize,
    y: SharedMut<f32>,
    h_last: SharedMut<f32>,
) {
    let (t_len, w) = (input.seq_len, input.width);
    let chans = c0..c0 + width;
    let mut h = [0.0f32; CHANNEL_BLOCK];
    let h = &mut h[..width];
    if let Some(h0) = input.h0 {
        h.copy_from_slice(&h0[b * w..][chans.clone()]);
    }
    let (bx, ba, sp) = (
        &input.gate_x_bias[chans.clone()],
        &input.gate_a_bias[chans.clone()],
        &input.softplus_a[chans.clone()],
    );
    for t in 0..t_len {
        let bt = b * t_len + t;
        let row = bt * w + c0;
        let rows = row..row + width;
        // SAFETY: this task's part of `y` (see above).
        let out = unsafe { std::slice::from_raw_parts_mut(y.ptr().add(row), width) };
        if input.real.is_none_or(|r| r[bt]) {
            let (x, gx, ga) = (
                &input.x[rows.clone()],
                &input.gate_x[rows.clone()],
                &input.gate_a[rows.clone()],
            );
            if input.reset[bt] {
                for c in 0..width {
                    h[c] = sigmoid(gx[c] + bx[c]) * x[c];
                }
            } else {
                for c in 0..width {
                    let log_a = -8.0 * sigmoid(ga[c] + ba[c]) * sp[c];
                    let a = exp(log_a);
                    let a_sq = exp(2.0 * log_a);
                    let xn = sigmoid(gx[c] + bx[c]) * x[c];
                    h[c] = a.mul_add(h[c], (1.0 - a_sq).sqrt() * xn);
                }
            }
        }
        match input.branch {
            Some(br) => {
                let br = &br[rows];
                for c in 0..width {
                    out[c] = h[c] * gelu_tanh(br[c]);
                }
            }
            None => out.copy_from_slice(h),
        }
    }
    // SAFETY: this task's part of `h_last`.
    let last = unsafe { std::slice::from_raw_parts_mut(h_last.ptr().add(b * w + c0), width) };
    last.copy_from_slice(h);
}
