//! Griffin and Hawk (De et al., arXiv 2402.19427), as published in the RecurrentGemma checkpoints.
//!
//! Residual blocks of RG-LRU recurrence (Hawk) or of recurrence mixed with local multi-query
//! attention (Griffin). The RG-LRU's prefill runs on the `kernels` linear-recurrence scan
//! ([`kernels::linear_scan`]), parallel over time, and decoding keeps a fixed-size state.
//!
//! Not implemented yet: this crate holds the place of the model in the workspace layout.
pub use kernels;
