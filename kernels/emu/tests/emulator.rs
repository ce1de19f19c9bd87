//! The emulator itself: each CUDA feature it stands in for, checked against host arithmetic, and
//! the failures it must report instead of hanging.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use kernels_emu::launch;

/// Mirrors `SelftestParams` in selftest.cu.
#[repr(C)]
struct Params {
    input: *const f32,
    out: *mut f32,
    counter: *mut i32,
    ints: *const i32,
    ints_out: *mut i32,
    n: i32,
}

fn params(
    input: &[f32],
    out: &mut [f32],
    counter: &mut i32,
    ints: &[i32],
    ints_out: &mut [i32],
) -> Params {
    Params {
        input: input.as_ptr(),
        out: out.as_mut_ptr(),
        counter,
        ints: ints.as_ptr(),
        ints_out: ints_out.as_mut_ptr(),
        n: input.len() as i32,
    }
}

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 8.0)
        .collect()
}

#[test]
fn block_reduction_in_shared_memory_with_barriers() {
    // 64 blocks x 256 threads, the last block partly past the end.
    let n = 64 * 256 - 100;
    let input = values(n);
    let mut out = vec![0.0f32; 64];
    let mut counter = 0;
    let p = params(&input, &mut out, &mut counter, &[], &mut []);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    unsafe { launch("selftest_block_sum", [64, 1, 1], [256, 1, 1], 0, &p) }.unwrap();
    for (b, &got) in out.iter().enumerate() {
        let want: f32 = input.iter().skip(b * 256).take(256).sum();
        assert!((got - want).abs() < 1e-3, "block {b}: {got} vs {want}");
    }
    assert_eq!(counter, 64, "one atomicAdd per block");
}

#[test]
fn warp_shuffles_and_ballot() {
    let n = 96; // three warps
    let input = values(n);
    let ints: Vec<i32> = (0..n as i32).map(|i| i * i + i / 3).collect();
    let mut out = vec![0.0f32; 4 * n];
    let mut ballots = vec![0i32; 3];
    let mut counter = 0;
    let p = params(&input, &mut out, &mut counter, &ints, &mut ballots);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    unsafe { launch("selftest_warp_ops", [1, 1, 1], [96, 1, 1], 0, &p) }.unwrap();
    for w in 0..3 {
        let lanes = &input[w * 32..(w + 1) * 32];
        let total: f32 = lanes.iter().sum();
        let mut ballot = 0u32;
        for l in 0..32 {
            let i = w * 32 + l;
            let prefix: f32 = lanes[..=l].iter().sum();
            assert!((out[4 * i] - prefix).abs() < 1e-4, "prefix lane {i}");
            assert!((out[4 * i + 1] - total).abs() < 1e-4, "xor-reduce lane {i}");
            assert_eq!(out[4 * i + 2], lanes[3], "broadcast lane {i}");
            assert_eq!(
                out[4 * i + 3],
                lanes[if l < 31 { l + 1 } else { l }],
                "shfl_down lane {i}"
            );
            if ints[i] & 1 == 1 {
                ballot |= 1 << l;
            }
        }
        assert_eq!(ballots[w] as u32, ballot, "ballot of warp {w}");
    }
}

#[test]
fn dynamic_shared_memory() {
    let input = values(3 * 128);
    let mut out = vec![0.0f32; 3 * 128];
    let mut counter = 0;
    let p = params(&input, &mut out, &mut counter, &[], &mut []);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    unsafe {
        launch(
            "selftest_dynamic_shared",
            [3, 1, 1],
            [128, 1, 1],
            128 * 4,
            &p,
        )
    }
    .unwrap();
    for b in 0..3 {
        for t in 0..128 {
            assert_eq!(out[b * 128 + t], input[b * 128 + 127 - t]);
        }
    }
}

#[test]
fn dp4a_and_16_bit_conversions() {
    let input = vec![
        1.0f32,
        1.0 + 1.0 / 256.0, // halfway between two bf16 values: ties to even (1.0)
        1.0 + 3.0 / 256.0, // a tie that rounds up to the even neighbour
        -std::f32::consts::E,
        65519.0,
        1e-6,
        f32::INFINITY,
        0.333333,
    ];
    let n = input.len();
    let ints: Vec<i32> = (0..2 * n as i32)
        .map(|i| (i * 0x01f3_7a5b) ^ (i << 7))
        .collect();
    let mut out = vec![0.0f32; 2 * n];
    let mut dots = vec![0i32; n];
    let mut counter = 0;
    let p = params(&input, &mut out, &mut counter, &ints, &mut dots);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    unsafe { launch("selftest_numeric", [1, 1, 1], [32, 1, 1], 0, &p) }.unwrap();
    for i in 0..n {
        let (a, b) = (ints[2 * i].to_le_bytes(), ints[2 * i + 1].to_le_bytes());
        let dot: i32 = (0..4)
            .map(|k| a[k] as i8 as i32 * b[k] as i8 as i32)
            .sum::<i32>()
            + i as i32;
        assert_eq!(dots[i], dot, "dp4a {i}");
        assert_eq!(
            out[2 * i],
            half::bf16::from_f32(input[i]).to_f32(),
            "bf16 round trip of {}",
            input[i]
        );
        assert_eq!(
            out[2 * i + 1],
            half::f16::from_f32(input[i]).to_f32(),
            "f16 round trip of {}",
            input[i]
        );
    }
}

#[test]
fn barrier_not_reached_by_every_thread_is_an_error_not_a_hang() {
    let mut out = vec![0.0f32; 64];
    let mut counter = 0;
    let p = params(&[], &mut out, &mut counter, &[], &mut []);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    let err =
        unsafe { launch("selftest_divergent_barrier", [2, 1, 1], [64, 1, 1], 0, &p) }.unwrap_err();
    assert!(
        err.0.contains("block (0,0,0)")
            && err.0.contains("32 thread(s) at __syncthreads")
            && err.0.contains("32 returned"),
        "{err}"
    );
}

#[test]
fn shuffle_from_a_returned_lane_is_an_error() {
    let mut out = vec![0.0f32; 32];
    let mut counter = 0;
    let p = params(&[], &mut out, &mut counter, &[], &mut []);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    let err = unsafe {
        launch(
            "selftest_shuffle_from_exited_lane",
            [1, 1, 1],
            [32, 1, 1],
            0,
            &p,
        )
    }
    .unwrap_err();
    assert!(err.0.contains("returned"), "{err}");
}

#[test]
fn invalid_launches_and_unknown_kernels_are_errors() {
    let mut counter = 0;
    let p = params(&[], &mut [], &mut counter, &[], &mut []);
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    let err = unsafe { launch("selftest_block_sum", [1, 1, 1], [2048, 1, 1], 0, &p) }.unwrap_err();
    assert!(err.0.contains("invalid launch configuration"), "{err}");
    // SAFETY: `p` is the self-test kernels' `#[repr(C)]` parameter struct, whose pointers
    // are to buffers that live through the call and are sized for what this launch touches.
    let err = unsafe { launch("no_such_kernel", [1, 1, 1], [1, 1, 1], 0, &p) }.unwrap_err();
    assert!(
        err.0.contains("no emulated kernel named no_such_kernel"),
        "{err}"
    );
}
