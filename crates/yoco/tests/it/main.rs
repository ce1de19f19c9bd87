//! YOCO's tests in one binary: both official-code fixtures through the loader, and behaviour.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod behaviour;
mod fixture;
