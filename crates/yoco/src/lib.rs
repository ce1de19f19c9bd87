//! YOCO, "You Only Cache Once: Decoder-Decoder Architectures for Language Models" (Sun et al.,
//! arXiv 2405.05254).
//!
//! A self-decoder (gated retention or sliding-window attention, constant-size caches) produces one
//! key/value set that every cross-decoder layer shares, so the KV cache is stored once instead of
//! once per layer, and a prompt's prefill can exit before the cross-decoder.
//!
//! Not implemented yet: this crate holds the place of the model in the workspace layout. Its
//! kernels (sliding-window attention, gated retention) will live in the `kernels` crate.
pub use kernels;
