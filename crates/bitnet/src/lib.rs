//! BitNet b1.58 (Ma et al., arXiv 2402.17764; 2B4T report arXiv 2504.12285) and the original 1-bit
//! BitNet (Wang et al., arXiv 2310.11453): language models whose linear layers use ternary
//! {−1, 0, +1} (or binary ±1) weights with int8 activations.
//!
//! Reads like the architecture: [`config`] (from the checkpoint's `config.json`, including its
//! weight format), [`bit_linear`] (the quantised linear layer on the packed
//! `kernels::ternary_matmul`), [`rotary`], [`attention`] and [`mlp`] (with SubLN), the
//! [`decoder_layer`], the [`model`], its KV [`cache`], [`loading`] and [`generation`].
//!
//! Weights stay packed at 2 bits per weight from load to matmul: a packed checkpoint is repacked
//! (never unpacked to floats) and master weights are ternarised once at load.
pub mod attention;
pub mod bit_linear;
pub mod cache;
pub mod config;
pub mod decoder_layer;
pub mod error;
pub mod generation;
pub mod loading;
pub mod mlp;
pub mod model;
pub mod rotary;

pub use bit_linear::BitLinear;
pub use cache::Cache;
pub use config::{Config, ScaleConvention, WeightFormat};
pub use error::{BitNetError, Result};
pub use loading::load;
pub use model::Model;

/// An RMSNorm `x / sqrt(mean(x²) + eps) · w` (Llama's, computed in f32) loading `<prefix>.weight`.
pub(crate) fn rms_norm(
    dim: usize,
    eps: f64,
    vb: candle_nn::VarBuilder,
) -> Result<candle_nn::RmsNorm> {
    candle_nn::rms_norm(dim, eps, vb).map_err(|e| BitNetError::Weights(e.to_string()))
}
