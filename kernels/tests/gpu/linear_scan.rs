//! The scan's PTX on a real GPU against the CPU reference. Prints `SKIPPED: no CUDA device` where
//! there is none (and fails instead under `cargo xtask test-gpu`, which sets FRUGAL_REQUIRE_GPU).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![cfg(any(feature = "cuda-dynamic", feature = "candle-cuda"))]

use std::time::Instant;

use crate::common::{assert_close, shapes, Case, Resets, VARIANTS};
use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use half::bf16;
use kernels::gpu::linear_scan::linear_scan_gpu;
use kernels::gpu::test_context;
use kernels::linear_scan::{linear_scan_reference, ScanElement, ScanOutput, ScanShape};

fn on_gpu<T: ScanElement + DeviceRepr + ValidAsZeroBits>(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    case: &Case<T>,
) -> ScanOutput<T> {
    let a = stream.clone_htod(&case.a).unwrap();
    let x = stream.clone_htod(&case.x).unwrap();
    let h0 = case.h0.as_ref().map(|v| stream.clone_htod(v).unwrap());
    let reset = case.reset.as_ref().map(|v| stream.clone_htod(v).unwrap());
    let (h, h_last) =
        linear_scan_gpu(stream, case.shape, &a, &x, h0.as_ref(), reset.as_ref()).unwrap();
    ScanOutput {
        h: stream.clone_dtoh(&h).unwrap(),
        h_last: stream.clone_dtoh(&h_last).unwrap(),
    }
}

fn check_all<T: ScanElement + DeviceRepr + ValidAsZeroBits>(test: &str, rtol: f32, seed: u64) {
    let Some(ctx) = test_context(test) else {
        return;
    };
    let stream = ctx.default_stream();
    let mut shapes = shapes();
    shapes.push(ScanShape::new(2, 65_536, 7).unwrap()); // long prompt, few channels
    shapes.push(ScanShape::new(1, 4096, 2560).unwrap()); // RecurrentGemma-2B width
    for (i, shape) in shapes.into_iter().enumerate() {
        for (with_h0, resets) in VARIANTS {
            let case = Case::<T>::random(shape, with_h0, resets, seed + i as u64);
            let want = linear_scan_reference(&case.input()).unwrap();
            let got = on_gpu(&stream, &case);
            assert_close(
                &format!("gpu {shape} h0={with_h0} resets={resets:?}"),
                &got,
                &want,
                rtol,
                1e-5,
            );
        }
    }
}

#[test]
fn gpu_scan_matches_reference_f32() {
    check_all::<f32>("gpu_scan_matches_reference_f32", 1e-4, 100);
}

#[test]
fn gpu_scan_matches_reference_bf16() {
    check_all::<bf16>("gpu_scan_matches_reference_bf16", 1.0 / 128.0, 200);
}

#[test]
fn gpu_scan_rejects_mismatched_buffers() {
    let Some(ctx) = test_context("gpu_scan_rejects_mismatched_buffers") else {
        return;
    };
    let stream = ctx.default_stream();
    let shape = ScanShape::new(1, 10, 4).unwrap();
    let a = stream.clone_htod(&[0.5f32; 40]).unwrap();
    let x = stream.clone_htod(&[0.5f32; 39]).unwrap();
    let err = linear_scan_gpu(&stream, shape, &a, &x, None, None).unwrap_err();
    assert!(
        err.to_string().contains("`x` has 39 elements, expected 40"),
        "{err}"
    );
}

#[test]
fn gpu_scan_throughput_report() {
    // Not a bench (see `cargo xtask bench-gpu`): a sanity figure printed beside the test.
    let Some(ctx) = test_context("gpu_scan_throughput_report") else {
        return;
    };
    let stream = ctx.default_stream();
    let shape = ScanShape::new(8, 65_536, 256).unwrap();
    let case = Case::<f32>::random(shape, false, Resets::None, 5);
    let a = stream.clone_htod(&case.a).unwrap();
    let x = stream.clone_htod(&case.x).unwrap();
    linear_scan_gpu(&stream, shape, &a, &x, None, None).unwrap();
    stream.synchronize().unwrap();
    let t = Instant::now();
    let reps = 10;
    for _ in 0..reps {
        linear_scan_gpu(&stream, shape, &a, &x, None, None).unwrap();
    }
    stream.synchronize().unwrap();
    let secs = t.elapsed().as_secs_f64() / reps as f64;
    let bytes = 3.0 * shape.len() as f64 * 4.0;
    println!(
        "linear_scan f32 {shape}: {:.3} ms, {:.0} GB/s of a, x, h",
        secs * 1e3,
        bytes / secs / 1e9
    );
}
