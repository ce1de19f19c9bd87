//! Errors of loading and running the dense baseline: the error type every frugal model shares
//! ([`layers::Error`]: config, files, weights, input, cache, kernels, non-finite values), under
//! this crate's name.
pub use layers::Error as TransformerError;

pub type Result<T> = std::result::Result<T, TransformerError>;
