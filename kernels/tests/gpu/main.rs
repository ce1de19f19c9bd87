//! The GPU tests in one binary: each CUDA kernel on a real device against its CPU reference.
//! Without a GPU each test prints `SKIPPED: no CUDA device` and passes, unless FRUGAL_REQUIRE_GPU
//! is set (`cargo xtask test-gpu`). `cargo xtask gpu-bundle` bundles this binary (its `cuda` build
//! adds the candle ops on the device, `ops.rs`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod additive_attention;
#[path = "../it/common.rs"]
mod common;
mod discovery;
mod linear_scan;
mod ops;
mod sparse_attention;
mod ternary_matmul;
mod window_attention;
