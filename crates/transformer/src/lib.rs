//! A dense, Llama-style decoder-only Transformer: the baseline every frugal architecture is
//! measured against (`frugal compare`, the YOCO benches).
//!
//! Pre-norm RMSNorm, rotate-half RoPE, grouped-query attention with a full causal KV cache per
//! layer (what YOCO, Griffin and Hawk avoid), SwiGLU feed-forward, and HF Llama's checkpoint names
//! and `config.json`. It runs on the same CPU kernels as the other crates (the threaded GEMV of
//! `kernels::cpu_linear`, `kernels::window_attention` with no window), so a comparison measures
//! the architecture, not the implementation. Its logits match candle-transformers' Llama on the
//! same weights (tests/llama_reference.rs).
//!
//! candle-transformers' Llama is not used as the baseline itself: its cache grows by
//! concatenation (a copy of the whole cache per token), its one-row matmuls run on one thread, and
//! it does not report its cache's size, so it would measure candle rather than the architecture.
//!
//! ```no_run
//! # fn main() -> transformer::Result<()> {
//! use candle_core::{DType, Device};
//! use std::path::Path;
//!
//! let cfg = transformer::Config::from_file("llama/config.json")?;
//! let files = layers::files::safetensors_files(Path::new("llama"))?;
//! let vb = layers::weights::var_builder(&files, DType::F32, &Device::Cpu)?;
//! let model = transformer::Transformer::new(&cfg, vb)?;
//! let mut cache = model.new_cache(1, 4096)?;
//! let logits = model.forward_last(&[&[1, 2, 3]], &mut cache)?; // [1, vocab]
//! # Ok(()) }
//! ```
pub mod attention;
pub mod cache;
pub mod config;
pub mod error;
pub mod mlp;
pub mod model;

pub use cache::KvCache;
pub use config::Config;
pub use error::{Result, TransformerError};
pub use model::{Transformer, PREFILL_CHUNK};
