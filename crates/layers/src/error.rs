//! The one error type of every frugal model crate: loading a checkpoint, validating its config,
//! checking input, sizing caches and running the layers. Each model crate exports it under its own
//! name (`griffin::GriffinError`, `bitnet::BitNetError`, ...).
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A config that the model cannot be built from, or a value it does not implement.
    #[error("config: {0}")]
    Config(String),
    /// A `config.json` value out of its domain, named by its key.
    #[error("config `{key}`: {message}")]
    ConfigValue { key: String, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A path that must be a regular file is a directory, a FIFO, a device or a socket. Opening a
    /// FIFO would block until some writer appears.
    #[error("{path}: not a regular file (it is {kind})")]
    NotAFile { path: PathBuf, kind: &'static str },
    /// A path read from a file (a shard in an index, an HF cache ref) that would leave the
    /// directory it must stay in.
    #[error("{file}: `{entry}` leaves its directory (only plain relative names are allowed)")]
    Escapes { file: PathBuf, entry: String },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    /// A tensor missing from the checkpoint or of the wrong shape (candle names the key, the
    /// expected and the found shape), or weights the model cannot use as they are.
    #[error("checkpoint: {0}")]
    Weights(String),
    /// A checkpoint tensor of the wrong dtype, shape, or with non-finite values, named.
    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },
    /// A size from the user or a file that cannot be honoured: what it is, what was asked, and
    /// the limit it passes.
    #[error("{what}: {requested} is too large (the limit is {limit})")]
    TooLarge {
        what: String,
        requested: String,
        limit: String,
    },
    /// Values that became NaN or infinite while running the model, and where first.
    #[error("non-finite values (NaN or infinity) {place}")]
    NonFinite { place: String },
    /// Token ids a model cannot take: empty, ragged, out of the vocabulary, too long.
    #[error("input: {0}")]
    Input(String),
    /// A cache or state that cannot take the request (capacity, batch, kind).
    #[error("cache: {0}")]
    Cache(String),
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A candle error from building a layer, as a checkpoint error (a tensor missing or misshapen).
pub fn weights(e: candle_core::Error) -> Error {
    Error::Weights(e.to_string())
}

impl Error {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::ConfigValue {
            key: key.into(),
            message: message.into(),
        }
    }
}
