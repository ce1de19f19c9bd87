//! Smart Bird: learnable sparse attention (Wu, Wu, Qi, Jiao, Jiang, Huang, Xie; arXiv 2108.09193),
//! **reconstructed**: no reference code is public, and only the method's outline is known
//! (docs/smartbird.md). What the paper states, and this crate follows:
//!
//! 1. a single-head, low-dimensional Transformer layer computes a sketched attention matrix
//!    `softmax(Q̂K̂ᵀ/√d)` ([`sketch`]), cost O(N²·d);
//! 2. token pairs are sampled from its probabilities, giving a different sparse index matrix per
//!    attention head;
//! 3. each head attends over the keys its index matrix selects ([`attention`]), O(N·K·D).
//!
//! **Our choices**, each marked where it is made:
//! - the sketch: a `hidden → d` down-projection, then its own query/key projections (all with
//!   biases), one sketch per layer from that layer's input ([`sketch`]);
//! - sampling: Gumbel-top-K on `log Â` — `K` keys per query *without* replacement, with probability
//!   proportional to the sketch, independent noise per head and layer (seed `seed + layer`), and a
//!   deterministic top-K mode ([`config::Sampling`]); padding is never selected, and
//!   `include_self` optionally keeps each query's own position;
//! - `K` fixed per model (`keys_per_query`); a query with fewer candidate tokens attends to all;
//! - the rest of the encoder (embeddings, BERT output/FFN sublayers, attention pooling, classifier)
//!   as the `fastformer` crate's, and our own tensor names ([`model`]);
//! - inference only: no straight-through or other gradient path through the sampling.
//!
//! The kernels (selection and sparse attention) are `kernels::sparse_attention`.
pub mod attention;
pub mod config;
pub mod error;
pub mod layer;
pub mod model;
pub mod sketch;

pub use attention::{AttentionMode, Profile};
pub use config::{Config, Sampling};
pub use error::{Result, SmartBirdError};
pub use model::{load, save, Model, Outputs};
