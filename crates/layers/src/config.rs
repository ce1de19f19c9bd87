//! Reading a checkpoint's `config.json` and checking its numbers: each function names the key
//! it checks, so a bad value is reported where the user can fix it.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The text of `dir/config.json` and its path (a regular file: see [`crate::files`]).
pub fn read(dir: &Path) -> Result<(PathBuf, String)> {
    let path = dir.join("config.json");
    let text = crate::files::read_to_string(&path)?;
    Ok((path, text))
}

/// Reads `dir/config.json` and parses it with `parse` (a crate's `Config::from_json`); a config
/// error then names the file.
pub fn from_dir<T>(dir: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let (path, text) = read(dir)?;
    parse(&text).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// `config.json` text as the struct `T` describes; a syntax error, a missing field or a value of
/// the wrong type is a config error (serde names the field and the position).
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))
}

/// A float that must be finite and greater than zero (RoPE bases, norm epsilons, scales).
pub fn positive(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::config(
            key,
            format!("{v} must be finite and positive"),
        ))
    }
}

/// A float that must be finite and at least zero (dropout-like rates, optional caps).
pub fn non_negative(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(Error::config(
            key,
            format!("{v} must be finite and not negative"),
        ))
    }
}

/// A float that must lie in `(low, high]`.
pub fn in_range(key: &str, v: f64, low: f64, high: f64) -> Result<f64> {
    if v.is_finite() && v > low && v <= high {
        Ok(v)
    } else {
        Err(Error::config(
            key,
            format!("{v} must be in ({low}, {high}]"),
        ))
    }
}

/// A size that must be at least one.
pub fn nonzero(key: &str, v: usize) -> Result<usize> {
    if v == 0 {
        Err(Error::config(key, "must be at least 1"))
    } else {
        Ok(v)
    }
}

/// A token id from the config (padding, BOS, EOS) that must be in the vocabulary.
pub fn token_id(key: &str, id: usize, vocab_size: usize) -> Result<usize> {
    if id < vocab_size {
        Ok(id)
    } else {
        Err(Error::config(
            key,
            format!("token id {id} is not below vocab_size {vocab_size}"),
        ))
    }
}

/// `eos_token_id`-style values: a token id, a list of them, or null; each must be in the
/// vocabulary.
pub fn token_ids(key: &str, ids: &serde_json::Value, vocab_size: usize) -> Result<()> {
    let one = |v: &serde_json::Value| match v.as_u64() {
        Some(id) => {
            token_id(key, usize::try_from(id).unwrap_or(usize::MAX), vocab_size).map(|_| ())
        }
        None => Err(Error::config(key, format!("{v} is not a token id"))),
    };
    match ids {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Array(list) => list.iter().try_for_each(one),
        v => one(v),
    }
}
