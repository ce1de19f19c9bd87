//! What every frugal model crate shares around its layers: finding and opening a checkpoint's
//! files safely, loading its weights with their dtype and values checked, validating the numbers
//! of its `config.json`, sizing buffers from untrusted sizes without aborting, and noticing
//! non-finite activations where they first appear.
//!
//! Every function returns [`Error`], which the model crates' own error types wrap.
pub mod alloc;
pub mod config;
pub mod encoder;
pub mod error;
pub mod files;
pub mod finite;
pub mod generation;
pub mod kv_cache;
pub mod linear;
pub mod pool;
pub mod tokens;
pub mod weights;

pub use error::{Error, Result};
pub use linear::Linear;
