//! The CUDA scan kernel (kernels/cuda/linear_scan.cu), compiled for the host and run through the
//! same launch plan the GPU uses, against the CPU reference.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::ffi::c_void;

use crate::common::{assert_close, shapes, Case, Resets, VARIANTS};
use half::bf16;
use kernels::linear_scan::plan::plan;
use kernels::linear_scan::{linear_scan_reference, ScanElement, ScanOutput, ScanShape};
use kernels::params::{FrugalLinearScanParams, FRUGAL_SCAN_CHUNK_LEN};
use proptest::prelude::*;

/// Runs every launch of the plan on host buffers, as `gpu::linear_scan` does on device buffers.
fn emulated<T: ScanElement>(case: &Case<T>) -> Result<ScanOutput<T>, kernels_emu::EmuError> {
    let shape = case.shape;
    let plan = plan(shape, T::DTYPE).expect("plan");
    let mut h = vec![T::from_f32(f32::NAN); shape.len()];
    let mut h_last = vec![f32::NAN; shape.state_len()];
    let mut chunk_a = vec![f32::NAN; plan.workspace_len];
    let mut chunk_h = vec![f32::NAN; plan.workspace_len];
    let params = FrugalLinearScanParams {
        a: case.a.as_ptr() as *const c_void,
        x: case.x.as_ptr() as *const c_void,
        h0: case.h0.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        reset: case.reset.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        h: h.as_mut_ptr() as *mut c_void,
        h_last: h_last.as_mut_ptr(),
        chunk_a: if plan.workspace_len > 0 {
            chunk_a.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        chunk_h: if plan.workspace_len > 0 {
            chunk_h.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        batch: shape.batch as i32,
        seq_len: shape.seq_len as i32,
        channels: shape.channels as i32,
        num_chunks: plan.num_chunks as i32,
    };
    for launch in &plan.launches {
        // SAFETY: every pointer in `params` is a live host buffer sized as the plan expects.
        unsafe {
            kernels_emu::launch(
                launch.kernel,
                launch.grid,
                launch.block,
                launch.shared_bytes,
                &params,
            )?
        };
    }
    Ok(ScanOutput { h, h_last })
}

// The kernel composes affine maps in a different order than the sequential loop and uses fused
// multiply-adds: equal to rounding, not bit-identical.
const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

fn check_all_shapes<T: ScanElement>(rtol: f32, seed: u64) {
    for (i, shape) in shapes().into_iter().enumerate() {
        for (with_h0, resets) in VARIANTS {
            let case = Case::<T>::random(shape, with_h0, resets, seed + i as u64);
            let want = linear_scan_reference(&case.input()).unwrap();
            let got = emulated(&case).unwrap();
            assert_close(
                &format!("{shape} h0={with_h0} resets={resets:?}"),
                &got,
                &want,
                rtol,
                ATOL,
            );
        }
    }
}

#[test]
fn emulated_cuda_matches_reference_f32() {
    check_all_shapes::<f32>(RTOL, 10);
}

#[test]
fn emulated_cuda_matches_reference_bf16() {
    // h is rounded to bf16 (8 significant bits): one ulp apart where f32 sums differ in rounding.
    check_all_shapes::<bf16>(1.0 / 128.0, 20);
}

#[test]
fn plan_uses_one_pass_for_one_chunk_and_three_otherwise() {
    let chunk = FRUGAL_SCAN_CHUNK_LEN as usize;
    let one = plan(
        ScanShape::new(2, chunk, 40).unwrap(),
        kernels::linear_scan::ScanDtype::F32,
    )
    .unwrap();
    assert_eq!(one.launches.len(), 1);
    assert_eq!(one.workspace_len, 0);
    assert_eq!(one.launches[0].grid, [2, 1, 2]);
    let three = plan(
        ScanShape::new(2, chunk + 1, 40).unwrap(),
        kernels::linear_scan::ScanDtype::Bf16,
    )
    .unwrap();
    let names: Vec<_> = three.launches.iter().map(|l| l.kernel).collect();
    assert_eq!(
        names,
        [
            "linear_scan_chunk_summary_bf16",
            "linear_scan_chunk_carry",
            "linear_scan_chunk_apply_bf16"
        ]
    );
    assert_eq!(three.workspace_len, 2 * 40 * 2);
    let too_long = ScanShape::new(1, chunk * 65_536, 1).unwrap();
    assert!(plan(too_long, kernels::linear_scan::ScanDtype::F32).is_err());
}

#[test]
fn emulated_long_sequence_with_one_channel_uses_many_chunks() {
    // Few channels, long time: the case the chunked design exists for.
    let shape = ScanShape::new(1, 20 * FRUGAL_SCAN_CHUNK_LEN as usize + 5, 3).unwrap();
    let case = Case::<f32>::random(shape, true, Resets::Random(500), 77);
    let want = linear_scan_reference(&case.input()).unwrap();
    assert_close("long", &emulated(&case).unwrap(), &want, RTOL, ATOL);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn emulated_cuda_matches_reference_on_random_shapes(
        batch in 1usize..3, seq_len in 1usize..600, channels in 1usize..80,
        with_h0: bool, reset_every in prop::option::of(1u64..40), seed: u64,
    ) {
        let shape = ScanShape::new(batch, seq_len, channels).unwrap();
        let resets = reset_every.map_or(Resets::None, Resets::Random);
        let case = Case::<f32>::random(shape, with_h0, resets, seed);
        let want = linear_scan_reference(&case.input()).unwrap();
        assert_close(&shape.to_string(), &emulated(&case).unwrap(), &want, RTOL, ATOL);
    }
}
