//! Fastformer: "Fastformer: Additive Attention Can Be All You Need" (Wu et al., arXiv 2108.09084),
//! an encoder whose attention pools the sequence into one global query and one global key per
//! head, linear in sequence length. It loads the official code's state_dict names and config.
//!
//! Read as the paper: [`config`], [`additive_attention`], [`layer`], [`model`] (encoder, attention
//! pooling, classifier, loading). The paper's parameter-sharing options are config switches:
//! `share_query_value` (the official code's choice) and `share_layers`.
//!
//! The additive attention runs on the fused `kernels::additive_attention` kernel.
pub mod additive_attention;
pub mod config;
pub mod error;
pub mod layer;
pub mod model;

pub use config::Config;
pub use error::{FastformerError, Result};
pub use model::{load, Model, Outputs};
