//! Errors of building and running the dense Transformer.
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransformerError {
    #[error("config: {0}")]
    Config(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tensor missing from the checkpoint or of the wrong shape (candle names the key, the
    /// expected and the found shape).
    #[error("checkpoint: {0}")]
    Weights(String),
    #[error("input: {0}")]
    Input(String),
    #[error("cache: {0}")]
    Cache(String),
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
    /// Checkpoint files, weights, config values, sizes and non-finite values (the checks every
    /// model crate shares).
    #[error(transparent)]
    Layers(#[from] layers::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, TransformerError>;
