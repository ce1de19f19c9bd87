//! Criterion benches live beside this file; `cargo bench` runs them (see README.md).
