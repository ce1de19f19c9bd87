//! The one error type of checkpoint reading and validation.
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
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
    /// A `config.json` value out of its domain, named by its key.
    #[error("config `{key}`: {message}")]
    Config { key: String, message: String },
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
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
