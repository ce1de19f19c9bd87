//! YOCO, "You Only Cache Once: Decoder-Decoder Architectures for Language Models" (Sun et al.,
//! arXiv 2405.05254), as the reference code (microsoft/unilm `YOCO/yoco/models/decoder`) computes
//! it.
//!
//! A self-decoder (gated retention or sliding-window attention, constant-size caches) produces one
//! key/value set that every cross-decoder layer shares, so the KV cache is stored once instead of
//! once per layer, and a prompt's prefill can exit before the cross-decoder.
//!
//! Reads like the paper: [`config`], [`rotary`] (the reference's interleaved RoPE with linspace
//! frequencies), the [`gated_retention`] and [`sliding_window`] mixers of the [`self_decoder`],
//! the [`cross_decoder`] with its shared K/V, the [`model`] with prefill early exit, the [`cache`],
//! [`loading`] and [`generation`]. The kernels (`kernels::gated_retention`,
//! `kernels::window_attention`) run on the CPU here; their CUDA forms are in `kernels::gpu`.
pub mod cache;
pub mod config;
pub mod cross_decoder;
pub mod decoder_layer;
pub mod error;
pub mod ffn;
pub mod gated_retention;
pub mod generation;
pub mod loading;
pub mod model;
pub mod norm;
pub mod rotary;
pub mod self_decoder;
pub mod sliding_window;

pub use cache::{Cache, CacheBytes};
pub use config::{Config, SelfDecoderKind};
pub use error::{Result, YocoError};
pub use loading::load;
pub use model::Model;
