//! BitNet's tests in one binary: both HF fixtures through the loader, and behaviour (formats,
//! scales, bad input, sharding, chunked prefill).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod behaviour;
mod common;
mod fixture;
