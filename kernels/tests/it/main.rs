//! The kernels' tests in one binary (one link instead of one per file): each kernel's fast CPU
//! path and its CUDA source on the emulator against the plain CPU reference, the candle ops, and
//! the tidy checks of the hand-kept lists.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod additive_attention;
mod common;
mod compact_head;
mod cpu_linear;
mod cpu_math;
mod gated_retention;
mod linear_scan_cpu;
mod linear_scan_emulated;
mod linear_scan_op;
mod ops;
mod positional_attention;
mod quant_head;
mod rg_lru;
mod sparse_attention;
mod ternary_matmul;
mod tidy;
mod window_attention;
