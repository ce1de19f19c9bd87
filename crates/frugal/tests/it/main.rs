//! The `frugal` binary end to end, in one test binary: the commands on the fixtures (`cli`), and
//! bad input of every kind on every architecture (`bad_inputs`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod bad_inputs;
mod cli;
mod loading;
