//! Fastformer: additive attention (Wu et al., arXiv 2108.09084), an encoder whose attention pools
//! the sequence into global query and key vectors, linear in sequence length.
//!
//! Not implemented yet: this crate holds the place of the model in the workspace layout.
pub use kernels;
