//! frugal's kernels: every kernel the models need, each in four forms that are tested against
//! each other:
//!
//! - a plain CPU **reference**, written to be obviously correct;
//! - a **fast CPU path** (vectorised, threaded with rayon);
//! - a **CUDA kernel** (`kernels/cuda/*.cu`), compiled to PTX by `cargo xtask ptx`, embedded in
//!   this crate ([`ptx`]) and launched through cudarc ([`gpu`], behind the default `cuda-dynamic`
//!   feature, which loads the driver at run time and builds without any CUDA installed);
//! - the same CUDA source **emulated on the CPU** in tests (the `kernels-emu` crate), so CI checks
//!   the kernel logic without a GPU.
//!
//! Each kernel is also a candle custom op, so model crates call one function on tensors.
//!
//! Kernels so far:
//! - [`linear_scan`]: `h_t = a_t * h_{t-1} + x_t` per channel (RG-LRU, Hawk), with resets.
//! - [`additive_attention`]: Fastformer's two pooled vectors per head, linear in sequence length.
//! - [`window_attention`]: sliding-window or causal attention, flash-style, grouped KV heads.
//! - [`gated_retention`]: YOCO's gated retention, chunkwise, with its recurrent step.
//! - [`sparse_attention`]: Smart Bird's per-head (Gumbel-)top-K key selection and attention over
//!   the gathered keys.
//! - [`rg_lru`]: Griffin's RG-LRU from gate pre-activations to output in one pass (CPU only: on
//!   a GPU the model runs [`linear_scan`] between tensor ops).
//! - [`cpu_math`]: vectorisable `exp`, sigmoid, GeLU and RMSNorm rows for the fast CPU paths.
//! - [`ternary_matmul`]: BitNet's 2-bit packed ternary (or binary) weights times int8 activations.
pub mod additive_attention;
pub mod cpu;
pub mod cpu_linear;
pub mod cpu_math;
pub mod error;
pub mod gated_retention;
#[cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
pub mod gpu;
pub mod linear_scan;
pub mod params;
pub mod plan;
pub mod ptx;
pub mod rg_lru;
pub mod sparse_attention;
pub mod ternary_matmul;
pub mod tokens;
pub mod window_attention;

pub use error::{KernelError, Result};
