//! BitNet b1.58 (Ma et al., arXiv 2402.17764; 2B4T report arXiv 2504.12285) and the original 1-bit
//! BitNet: language models whose linear layers use ternary {-1, 0, +1} (or binary) weights with
//! int8 activations.
//!
//! Not implemented yet: this crate holds the place of the model in the workspace layout. The
//! packed ternary matmul will live in the `kernels` crate.
pub use kernels;
