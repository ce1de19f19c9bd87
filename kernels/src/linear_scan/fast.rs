//! The fast CPU path: vectorised over channels, threaded over (batch, channel block) tasks.
//!
//! Each task keeps the state of up to [`CHANNEL_BLOCK`] channels in registers/L1 and streams
//! through time, so every row it touches is a contiguous run of channels the compiler vectorises
//! (AVX2 when the CPU has it, detected at run time). The scan is memory-bound: it reads `a` and
//! `x` and writes `h` once each, which the criterion bench compares with a memcpy of those bytes.
use rayon::prelude::*;

use super::{ScanElement, ScanInput, ScanOutput};
use crate::cpu::SharedMut;
use crate::error::Result;

/// Channels per task: 64 f32 states fill eight AVX2 registers.
const CHANNEL_BLOCK: usize = 64;
/// Below this many elements threading costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// The fast CPU scan; same contract and results (up to f32 rounding) as
/// [`super::linear_scan_reference`].
pub fn linear_scan_cpu<T: ScanElement>(input: &ScanInput<'_, T>) -> Result<ScanOutput<T>> {
    input.validate()?;
    let s = input.shape;
    let mut h = vec![T::from_f32(0.0); s.len()];
    let mut h_last = vec![0.0f32; s.state_len()];
    let blocks = s.channels.div_ceil(CHANNEL_BLOCK);
    let h_ptr = SharedMut(h.as_mut_ptr());
    let last_ptr = SharedMut(h_last.as_mut_ptr());
    let task = |task: usize| {
        let (b, blk) = (task / blocks, task % blocks);
        let c0 = blk * CHANNEL_BLOCK;
        let width = CHANNEL_BLOCK.min(s.channels - c0);
        // SAFETY: task (b, blk) writes only h[b, :, c0..c0 + width] and h_last[b, c0..c0 + width];
        // tasks are distinct, so the writes are disjoint, and both buffers outlive the tasks.
        unsafe { scan_block(input, b, c0, width, h_ptr, last_ptr) };
    };
    let tasks = s.batch * blocks;
    if s.len() >= PARALLEL_MIN_ELEMENTS && tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    Ok(ScanOutput { h, h_last })
}

/// # Safety
/// The caller gives this call exclusive access to `h[b, :, c0..c0 + width]` and
/// `h_last[b, c0..c0 + width]`, and `input` is validated.
unsafe fn scan_block<T: ScanElement>(
    input: &ScanInput<'_, T>,
    b: usize,
    c0: usize,
    width: usize,
    h: SharedMut<T>,
    h_last: SharedMut<f32>,
) {
    let s = input.shape;
    let mut state = [0.0f32; CHANNEL_BLOCK];
    let state = &mut state[..width];
    if let Some(h0) = input.h0 {
        state.copy_from_slice(&h0[b * s.channels + c0..][..width]);
    }
    for t in 0..s.seq_len {
        let row = (b * s.seq_len + t) * s.channels + c0;
        let restart = input.reset.is_some_and(|r| r[b * s.seq_len + t] != 0);
        // SAFETY: row..row + width lies inside this task's part of `h` (see above).
        let out = unsafe { std::slice::from_raw_parts_mut(h.0.add(row), width) };
        step(
            state,
            &input.a[row..][..width],
            &input.x[row..][..width],
            out,
            restart,
        );
    }
    // SAFETY: this task's part of `h_last`.
    let last = unsafe { std::slice::from_raw_parts_mut(h_last.0.add(b * s.channels + c0), width) };
    last.copy_from_slice(state);
}

/// One time step for a block of channels, dispatched to an AVX2 build where the CPU has it.
#[inline(always)]
fn step<T: ScanElement>(state: &mut [f32], a: &[T], x: &[T], out: &mut [T], restart: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above; the check is cached by std).
            return unsafe { step_avx2(state, a, x, out, restart) };
        }
    }
    step_portable(state, a, x, out, restart)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn step_avx2<T: ScanElement>(
    state: &mut [f32],
    a: &[T],
    x: &[T],
    out: &mut [T],
    restart: bool,
) {
    step_portable(state, a, x, out, restart)
}

#[inline(always)]
fn step_portable<T: ScanElement>(
    state: &mut [f32],
    a: &[T],
    x: &[T],
    out: &mut [T],
    restart: bool,
) {
    if restart {
        state.fill(0.0); // h_{t-1} := 0, exactly as the reference
    }
    for (((h, &a), &x), o) in state.iter_mut().zip(a).zip(x).zip(out.iter_mut()) {
        *h = a.to_f32() * *h + x.to_f32();
        *o = T::from_f32(*h);
    }
}
