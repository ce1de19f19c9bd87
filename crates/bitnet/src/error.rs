//! Errors of loading and running a BitNet model: the error type every frugal model shares
//! ([`layers::Error`]: config, files, weights, input, cache, kernels, non-finite values), under
//! this crate's name.
pub use layers::Error as BitNetError;

pub type Result<T> = std::result::Result<T, BitNetError>;
