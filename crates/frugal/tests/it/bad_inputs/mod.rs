//! Bad input never crashes, hangs or answers NaN: a table of corrupt checkpoints (built at test
//! time from copies of the fixtures), bad configs, sizes, files and settings, run through the
//! `frugal` binary on every architecture. Each case must exit with status 1 (a clean error, not a
//! panic's 101 or an abort's signal), within a deadline, with stderr naming the problem; and the
//! config and safetensors readers are fuzzed with arbitrary input.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod cases;
mod checkpoint;
mod readers;
