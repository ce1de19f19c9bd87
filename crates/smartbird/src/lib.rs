//! Smart Bird: learnable sparse attention (Wu et al., arXiv 2108.09193).
//!
//! No reference code of Smart Bird is public: this crate will be a reconstruction from the paper's
//! method (a low-dimensional sketch of the attention matrix, per-head sampling of sparse key
//! indices, attention over the sampled keys), and will say which choices are its own.
//!
//! Not implemented yet: this crate holds the place of the model in the workspace layout.
pub use kernels;
