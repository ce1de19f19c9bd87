//! Ternary matmul: packing, the reference against float math, the fast CPU path and the CUDA
//! kernels (emulated on the CPU) against the reference, bit for bit.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::common::Rng;
use kernels::params::{
    FrugalTernaryMatmulParams, FrugalTernaryQuantizeParams, FRUGAL_TERNARY_GEMM_THREADS,
    FRUGAL_TERNARY_GEMM_TILE, FRUGAL_TERNARY_GEMV_WARPS, FRUGAL_TERNARY_QUANT_THREADS,
};
use kernels::plan::KernelLaunch;
use kernels::ternary_matmul::plan::plan;
use kernels::ternary_matmul::{
    quantize_activations, ternary_matmul_cpu, ternary_matmul_reference, PackedTernary, TernaryShape,
};
use kernels::KernelError;
use proptest::prelude::*;

fn random_ternary(n: usize, k: usize, rng: &mut Rng) -> Vec<i8> {
    (0..n * k).map(|_| (rng.next_u64() % 3) as i8 - 1).collect()
}

fn random_x(m: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    // Rows of different magnitudes, so per-token scales differ.
    (0..m * k)
        .map(|i| rng.uniform(-1.0, 1.0) * (1.0 + (i / k) as f32 * 3.0))
        .collect()
}

fn case(m: usize, n: usize, k: usize, seed: u64) -> (Vec<f32>, PackedTernary) {
    let mut rng = Rng::new(seed);
    let w = PackedTernary::from_ternary(&random_ternary(n, k, &mut rng), n, k, 0.37).unwrap();
    (random_x(m, k, &mut rng), w)
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 3, 127),
    (1, 5, 128),
    (2, 7, 129),
    (3, 33, 255),
    (4, 17, 256),
    (5, 31, 300),
    (9, 65, 385),
    (70, 67, 200),
    (1, 256, 2560),
];

#[test]
fn packing_round_trips_every_form() {
    let mut rng = Rng::new(1);
    for &(n, k) in &[(1, 1), (4, 3), (8, 129), (12, 300)] {
        let t = random_ternary(n, k, &mut rng);
        let w = PackedTernary::from_ternary(&t, n, k, 1.0).unwrap();
        assert_eq!(w.to_ternary(), t);
        assert_eq!(w.k_padded() % 128, 0);
        assert_eq!(w.bytes().len(), n * w.k_padded() / 4);
        if n % 4 != 0 {
            continue;
        }
        // HF layout: bits 2i of packed[r, c] hold T[i * n/4 + r, c] + 1.
        let q = n / 4;
        let mut hf = vec![0u8; q * k];
        for r in 0..n {
            for c in 0..k {
                hf[(r % q) * k + c] |= ((t[r * k + c] + 1) as u8) << (2 * (r / q));
            }
        }
        let from_hf = PackedTernary::from_hf_packed(&hf, n, k, 1.0).unwrap();
        assert_eq!(from_hf, w, "HF unpacking at [{n}, {k}]");
    }
}

#[test]
fn absmean_ternarisation_and_binarisation_follow_the_papers() {
    // mean|W| = 0.5: s = 2, so W·s = [1.6, -0.2, 0.6, -1.6, 0.0, 2.0] -> [1, 0, 1, -1, 0, 1].
    let w = [0.8f32, -0.1, 0.3, -0.8, 0.0, 1.0];
    let t = PackedTernary::ternarize_absmean(&w, 2, 3).unwrap();
    assert_eq!(t.to_ternary(), vec![1, 0, 1, -1, 0, 1]);
    assert!((t.scale() - 0.5).abs() < 1e-7);
    // Half-way values round to even: 0.5 -> 0, so W = [0.25, 0.75] (mean 0.5, s 2) gives [0, 1].
    let t = PackedTernary::ternarize_absmean(&[0.25, 0.75], 1, 2).unwrap();
    assert_eq!(t.to_ternary(), vec![0, 1]);
    // Binary: sign(W - mean(W)) with mean(W) = 0.2 (so 0.0 -> -1); beta = mean|W| = 0.5.
    let b = PackedTernary::binarize(&w, 2, 3).unwrap();
    assert_eq!(b.to_ternary(), vec![1, -1, 1, -1, -1, 1]);
    assert!((b.scale() - 0.5).abs() < 1e-7);
}

#[test]
fn bad_weights_are_errors() {
    assert!(matches!(
        PackedTernary::from_ternary(&[0, 2, 0], 1, 3, 1.0),
        Err(KernelError::Invalid { .. })
    ));
    assert!(matches!(
        PackedTernary::from_ternary(&[0, 1], 1, 3, 1.0),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        PackedTernary::from_ternary(&[], 0, 3, 1.0),
        Err(KernelError::Empty { .. })
    ));
    let e = PackedTernary::from_hf_packed(&[0b11], 4, 1, 1.0).unwrap_err();
    assert!(e.to_string().contains("code 3"), "{e}");
    assert!(PackedTernary::from_hf_packed(&[0; 3], 3, 1, 1.0).is_err());
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(PackedTernary::from_ternary(&[1], 1, 1, scale).is_err());
    }
    assert!(PackedTernary::ternarize_absmean(&[1.0, f32::NAN], 1, 2).is_err());
    let w = PackedTernary::from_ternary(&[1, 0, -1], 1, 3, 1.0).unwrap();
    let e = ternary_matmul_cpu(&[1.0, 2.0], 1, &w).unwrap_err();
    assert!(
        e.to_string().contains("`x` has 2 elements, expected 3"),
        "{e}"
    );
    assert!(matches!(
        ternary_matmul_reference(&[], 0, &w),
        Err(KernelError::Empty { .. })
    ));
}

#[test]
fn reference_matches_hand_computed_and_float_math() {
    // x = [1, -0.5, 0.25]: s = 127, x_q = [127, -64 (−63.5 to even), 32 (31.75)].
    let w = PackedTernary::from_ternary(&[1, 0, -1, -1, 1, 1], 2, 3, 0.5).unwrap();
    let y = ternary_matmul_reference(&[1.0, -0.5, 0.25], 1, &w).unwrap();
    let want = [
        (127.0 - 32.0) / 127.0 * 0.5,
        (-127.0 - 64.0 + 32.0) / 127.0 * 0.5,
    ];
    assert_eq!(y, want);
    // Against float math on the dequantised operands (HF's fake quantisation).
    let (m, n, k) = (3, 5, 203); // eight-lane chunks and a remainder
    let (x, w) = case(m, n, k, 7);
    let y = ternary_matmul_reference(&x, m, &w).unwrap();
    let t = w.to_ternary();
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        let s = 127.0 / row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for c in 0..n {
            let f: f64 = (0..k)
                .map(|j| f64::from((row[j] * s).round_ties_even() / s) * f64::from(t[c * k + j]))
                .sum::<f64>()
                * f64::from(w.scale());
            assert!(
                (f64::from(y[r * n + c]) - f).abs() < 1e-5,
                "[{r}, {c}]: {} vs {f}",
                y[r * n + c]
            );
        }
    }
}

#[test]
fn activation_quantisation_clamps_and_pads() {
    let w = PackedTernary::from_ternary(&[0; 3], 1, 3, 1.0).unwrap();
    let qa = quantize_activations(&[0.0, 0.0, 0.0, -2.0, 1.0, 0.5], 2, &w).unwrap();
    assert_eq!(qa.k_padded, 128);
    assert_eq!(&qa.q[..3], &[0, 0, 0]); // an all-zero token: scale 127 / 1e-5, no NaN
    assert_eq!(&qa.q[128..131], &[-127, 64, 32]);
    assert!(qa.q[3..128].iter().chain(&qa.q[131..]).all(|&v| v == 0));
    assert_eq!(qa.sum, vec![0, -31]);
    assert_eq!(qa.scale[1], 63.5);
}

#[test]
fn fast_path_is_bit_identical_to_reference() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        let (x, w) = case(m, n, k, i as u64);
        let want = ternary_matmul_reference(&x, m, &w).unwrap();
        let got = ternary_matmul_cpu(&x, m, &w).unwrap();
        assert_eq!(got, want, "m {m} n {n} k {k}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn fast_path_matches_reference_on_random_shapes(
        m in 1usize..12, n in 1usize..70, k in 1usize..400, seed in 0u64..1000
    ) {
        let (x, w) = case(m, n, k, seed);
        prop_assert_eq!(
            ternary_matmul_cpu(&x, m, &w).unwrap(),
            ternary_matmul_reference(&x, m, &w).unwrap()
        );
    }
}

/// Runs the CUDA source on the emulator: quantisation, then `matmul` (the plan's, or a forced one).
fn emulated(x: &[f32], m: usize, w: &PackedTernary, force: Option<&str>) -> Vec<f32> {
    let shape = TernaryShape::of(x, m, w).unwrap();
    let p = plan(shape).unwrap();
    let (n, kp) = (w.n(), w.k_padded());
    let mut x_q = vec![0x55i8; m * kp]; // garbage: the kernel must write every byte
    let mut x_scale = vec![0.0f32; m];
    let mut x_sum = vec![0i32; m];
    let mut y = vec![f32::NAN; m * n];
    let quantize = FrugalTernaryQuantizeParams {
        x: x.as_ptr(),
        x_q: x_q.as_mut_ptr(),
        x_scale: x_scale.as_mut_ptr(),
        x_sum: x_sum.as_mut_ptr(),
        m: m as i32,
        k: w.k() as i32,
        k_padded: kp as i32,
    };
    let l = &p.quantize;
    // SAFETY: host buffers sized for the shape.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &quantize) }.unwrap();
    let reference = quantize_activations(x, m, w).unwrap();
    assert_eq!(
        (&x_q, &x_scale, &x_sum),
        (&reference.q, &reference.scale, &reference.sum)
    );
    let matmul = FrugalTernaryMatmulParams {
        x_q: x_q.as_ptr(),
        x_scale: x_scale.as_ptr(),
        x_sum: x_sum.as_ptr(),
        w: w.bytes().as_ptr(),
        y: y.as_mut_ptr(),
        scale: w.scale(),
        m: m as i32,
        n: n as i32,
        k_padded: kp as i32,
    };
    let tile = FRUGAL_TERNARY_GEMM_TILE as usize;
    let l = match force {
        None => p.matmul.clone(),
        Some("ternary_gemv") => KernelLaunch {
            kernel: "ternary_gemv",
            grid: [
                n.div_ceil(FRUGAL_TERNARY_GEMV_WARPS as usize) as u32,
                m as u32,
                1,
            ],
            block: [FRUGAL_TERNARY_GEMV_WARPS * 32, 1, 1],
            shared_bytes: 0,
        },
        Some(_) => KernelLaunch {
            kernel: "ternary_gemm",
            grid: [n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, 1],
            block: [FRUGAL_TERNARY_GEMM_THREADS, 1, 1],
            shared_bytes: 0,
        },
    };
    // SAFETY: as above.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &matmul) }.unwrap();
    y
}

#[test]
fn plan_picks_gemv_for_decode_and_gemm_for_prefill() {
    let shape = |m| TernaryShape {
        m,
        n: 100,
        k: 64,
        k_padded: 128,
    };
    let decode = plan(shape(1)).unwrap();
    assert_eq!(decode.matmul.kernel, "ternary_gemv");
    assert_eq!(decode.matmul.grid, [25, 1, 1]);
    assert_eq!(decode.quantize.block, [FRUGAL_TERNARY_QUANT_THREADS, 1, 1]);
    let prefill = plan(shape(65)).unwrap();
    assert_eq!(prefill.matmul.kernel, "ternary_gemm");
    assert_eq!(prefill.matmul.grid, [2, 2, 1]);
}

#[test]
fn emulated_cuda_is_bit_identical_to_reference() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        let (x, w) = case(m, n, k, 100 + i as u64);
        let want = ternary_matmul_reference(&x, m, &w).unwrap();
        assert_eq!(
            emulated(&x, m, &w, None),
            want,
            "plan's kernel, m {m} n {n} k {k}"
        );
        if m * n * k <= 70 * 67 * 200 {
            for kernel in ["ternary_gemv", "ternary_gemm"] {
                assert_eq!(
                    emulated(&x, m, &w, Some(kernel)),
                    want,
                    "{kernel}, m {m} n {n} k {k}"
                );
            }
        }
    }
}

#[test]
fn binary_weights_run_through_the_same_kernels() {
    let (m, n, k) = (3, 9, 150);
    let mut rng = Rng::new(5);
    let master: Vec<f32> = (0..n * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let w = PackedTernary::binarize(&master, n, k).unwrap();
    assert!(w.to_ternary().iter().all(|&v| v == 1 || v == -1));
    let x = random_x(m, k, &mut rng);
    let want = ternary_matmul_reference(&x, m, &w).unwrap();
    assert_eq!(ternary_matmul_cpu(&x, m, &w).unwrap(), want);
    assert_eq!(emulated(&x, m, &w, Some("ternary_gemm")), want);
}
