//! The fast CPU scan against the reference, and the reference against hand-checked values.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::common::{shapes, Case, Resets, VARIANTS};
use half::bf16;
use kernels::linear_scan::{
    linear_scan_cpu, linear_scan_reference, ScanElement, ScanInput, ScanShape,
};
use kernels::KernelError;
use proptest::prelude::*;

#[test]
fn reference_matches_hand_computed_values() {
    // One channel: h0 = 1; a = [0.5, 0.5, 0.5, 2]; x = [1, 2, 3, 4]; reset at t = 2.
    // h = [0.5*1+1, 0.5*1.5+2, (reset) 3, 2*3+4] = [1.5, 2.75, 3, 10].
    let shape = ScanShape::new(1, 4, 1).unwrap();
    let input = ScanInput {
        shape,
        a: &[0.5f32, 0.5, 0.5, 2.0],
        x: &[1.0, 2.0, 3.0, 4.0],
        h0: Some(&[1.0]),
        reset: Some(&[0, 0, 1, 0]),
    };
    let out = linear_scan_reference(&input).unwrap();
    assert_eq!(out.h, vec![1.5, 2.75, 3.0, 10.0]);
    assert_eq!(out.h_last, vec![10.0]);
    assert_eq!(linear_scan_cpu(&input).unwrap(), out);
}

#[test]
fn channels_and_sequences_are_independent() {
    // Two sequences x two channels, each with its own constants.
    let shape = ScanShape::new(2, 3, 2).unwrap();
    let a = [
        1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0,
    ];
    let x = [
        1.0f32, 5.0, 1.0, 6.0, 1.0, 7.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0,
    ];
    let input = ScanInput {
        shape,
        a: &a,
        x: &x,
        h0: None,
        reset: None,
    };
    let out = linear_scan_cpu(&input).unwrap();
    // seq 0: ch0 counts 1,2,3; ch1 forgets: 5,6,7. seq 1: ch0 1,2,4; ch1 1,2,3.
    assert_eq!(
        out.h,
        vec![1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 1.0, 1.0, 2.0, 2.0, 4.0, 3.0]
    );
    assert_eq!(out.h_last, vec![3.0, 7.0, 4.0, 3.0]);
}

fn fast_equals_reference<T: ScanElement + PartialEq + std::fmt::Debug>(seed: u64) {
    for (i, shape) in shapes().into_iter().enumerate() {
        for (with_h0, resets) in VARIANTS {
            let case = Case::<T>::random(shape, with_h0, resets, seed + i as u64);
            let want = linear_scan_reference(&case.input()).unwrap();
            let got = linear_scan_cpu(&case.input()).unwrap();
            // Same f32 operations in the same order: bit-identical, not merely close.
            assert_eq!(got, want, "{shape} h0={with_h0} resets={resets:?}");
        }
    }
}

#[test]
fn fast_path_is_bit_identical_to_reference_f32() {
    fast_equals_reference::<f32>(1);
}

#[test]
fn fast_path_is_bit_identical_to_reference_bf16() {
    fast_equals_reference::<bf16>(2);
}

#[test]
fn large_threaded_scan_matches_reference() {
    // Past the threading threshold, with many channel blocks and sequences.
    let shape = ScanShape::new(3, 700, 333).unwrap();
    let case = Case::<f32>::random(shape, true, Resets::Random(50), 9);
    assert_eq!(
        linear_scan_cpu(&case.input()).unwrap(),
        linear_scan_reference(&case.input()).unwrap()
    );
}

#[test]
fn chunked_scan_equals_one_shot() {
    // Prefill in two pieces, the second continuing from the first's final state.
    let shape = ScanShape::new(2, 300, 19).unwrap();
    let case = Case::<f32>::random(shape, true, Resets::None, 4);
    let whole = linear_scan_cpu(&case.input()).unwrap();
    let split = 113;
    let piece = |from: usize, to: usize| -> (Vec<f32>, Vec<f32>) {
        let c = shape.channels;
        let take = |v: &[f32]| -> Vec<f32> {
            (0..shape.batch)
                .flat_map(|b| v[(b * 300 + from) * c..(b * 300 + to) * c].to_vec())
                .collect()
        };
        (take(&case.a), take(&case.x))
    };
    let (a1, x1) = piece(0, split);
    let (a2, x2) = piece(split, 300);
    let s1 = ScanShape::new(2, split, 19).unwrap();
    let s2 = ScanShape::new(2, 300 - split, 19).unwrap();
    let first = linear_scan_cpu(&ScanInput {
        shape: s1,
        a: &a1,
        x: &x1,
        h0: case.h0.as_deref(),
        reset: None,
    })
    .unwrap();
    let second = linear_scan_cpu(&ScanInput {
        shape: s2,
        a: &a2,
        x: &x2,
        h0: Some(&first.h_last),
        reset: None,
    })
    .unwrap();
    assert_eq!(second.h_last, whole.h_last);
    for b in 0..2 {
        let c = 19;
        assert_eq!(
            &first.h[b * split * c..(b + 1) * split * c],
            &whole.h[b * 300 * c..(b * 300 + split) * c]
        );
        assert_eq!(
            &second.h[b * (300 - split) * c..(b + 1) * (300 - split) * c],
            &whole.h[(b * 300 + split) * c..(b + 1) * 300 * c]
        );
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    assert!(matches!(
        ScanShape::new(1, 0, 4),
        Err(KernelError::Empty {
            what: "seq_len",
            ..
        })
    ));
    assert!(matches!(
        ScanShape::new(0, 3, 4),
        Err(KernelError::Empty { what: "batch", .. })
    ));
    let shape = ScanShape::new(1, 2, 2).unwrap();
    let four = [0.5f32; 4];
    let three = [0.5f32; 3];
    let err = linear_scan_cpu(&ScanInput {
        shape,
        a: &four,
        x: &three,
        h0: None,
        reset: None,
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Length {
                arg: "x",
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = linear_scan_reference(&ScanInput {
        shape,
        a: &four,
        x: &four,
        h0: Some(&[0.0]),
        reset: None,
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("`h0` has 1 elements, expected 2"),
        "{err}"
    );
    let err = linear_scan_cpu(&ScanInput {
        shape,
        a: &four,
        x: &four,
        h0: None,
        reset: Some(&[1]),
    })
    .unwrap_err();
    assert!(
        matches!(err, KernelError::Length { arg: "reset", .. }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn fast_path_matches_reference_on_random_shapes(
        batch in 1usize..4, seq_len in 1usize..300, channels in 1usize..150,
        with_h0: bool, reset_every in prop::option::of(1u64..20), seed: u64,
    ) {
        let shape = ScanShape::new(batch, seq_len, channels).unwrap();
        let resets = reset_every.map_or(Resets::None, Resets::Random);
        let case = Case::<f32>::random(shape, with_h0, resets, seed);
        prop_assert_eq!(linear_scan_cpu(&case.input()).unwrap(), linear_scan_reference(&case.input()).unwrap());
    }
}

#[test]
fn bf16_conversions_are_bit_identical_to_half() {
    // Every bf16 value, and f32 values around every rounding boundary, ties and specials.
    for bits in 0..=u16::MAX {
        let v = bf16::from_bits(bits);
        let ours = <bf16 as ScanElement>::to_f32(v);
        if v.is_nan() {
            // `half` quiets signalling NaNs; a plain shift (and CUDA) keeps the payload.
            assert!(ours.is_nan(), "to_f32 of {bits:#06x}");
        } else {
            assert_eq!(
                ours.to_bits(),
                v.to_f32().to_bits(),
                "to_f32 of {bits:#06x}"
            );
        }
    }
    let mut rng = crate::common::Rng::new(42);
    let specials = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
    ];
    let ties = (0..=u16::MAX).flat_map(|hi| {
        [0x7fffu32, 0x8000, 0x8001].map(|lo| f32::from_bits(((hi as u32) << 16) | lo))
    });
    let random = (0..100_000).map(|_| f32::from_bits(rng.next_u64() as u32));
    for v in specials.into_iter().chain(ties).chain(random) {
        let ours = <bf16 as ScanElement>::from_f32(v).to_bits();
        assert_eq!(
            ours,
            bf16::from_f32(v).to_bits(),
            "from_f32 of {:#010x}",
            v.to_bits()
        );
    }
}

#[test]
fn shapes_whose_element_count_overflows_are_errors() {
    let m = i32::MAX as usize;
    let e = ScanShape::new(m, m, m).unwrap_err();
    assert!(matches!(e, KernelError::Overflow { .. }), "{e:?}");
    assert!(e.to_string().contains("batch 2147483647"), "{e}");
    // Past isize::MAX elements too, though the product fits a usize.
    assert!(ScanShape::new(1 << 30, 1 << 30, 1 << 3).is_err());
    assert!(ScanShape::new(1 << 30, 1 << 30, 1 << 2).is_ok());
}
