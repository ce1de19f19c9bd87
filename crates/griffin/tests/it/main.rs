//! Griffin's tests in one binary: the HF fixture through the loader, each block against a plain
//! reference loop, and behaviour (batches, padding, state, bad input).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod behaviour;
mod blocks;
mod common;
mod fixture;
