//! GPU discovery never panics: on a machine without a driver or device it says so, and asking for
//! a context is a typed error. (Not a `gpu_*` test: it must pass everywhere.)
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use kernels::gpu::{context, status, GpuStatus};
use kernels::KernelError;

#[test]
fn discovery_reports_instead_of_panicking() {
    match status() {
        GpuStatus::NoDriver | GpuStatus::NoDevice(_) => {
            let err = context(0).unwrap_err();
            assert!(matches!(err, KernelError::NoCuda(_)), "{err}");
        }
        GpuStatus::Devices(names) => {
            assert!(!names.is_empty());
            assert!(context(0).is_ok());
            let err = context(names.len()).unwrap_err();
            assert!(err.to_string().contains("requested"), "{err}");
        }
    }
}
