//! The 4-bit head: the threaded AVX2 GEMV against the reference (the same quantised values
//! multiplied in f64) on odd shapes, the quantisation's error bounds, and bad input.
use kernels::quant_head::{q4_gemv_reference, Q4Matrix, GROUP};
use proptest::prelude::*;

use crate::common::{f32s, Rng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    rng.vec(n, -1.0, 1.0)
}

fn agree(rows: usize, cols: usize, m: usize, seed: u64) {
    let w = random(rows * cols, seed);
    let x = random(m * cols, seed + 1);
    let q = Q4Matrix::quantize(&w, rows, cols).unwrap();
    let got = q.gemv(&x, m).unwrap();
    let want = q4_gemv_reference(&q, &x, m).unwrap();
    assert_eq!(got.len(), m * rows);
    // The products' scale: each output sums `cols` products of values up to 1.
    let scale = (cols as f32).sqrt();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * scale * (1.0 + w.abs()),
            "[{rows}, {cols}] m {m}: output {i}: {g} vs {w}"
        );
    }
}

#[test]
fn gemv_matches_the_reference_on_odd_shapes() {
    // Rows around the task size (64), an odd number of groups (a padded pair), 2B4T's width.
    for (rows, cols) in [
        (1, 32),
        (63, 64),
        (64, 96),
        (65, 160),
        (5, 256),
        (3, 32 * 9),
        (200, 2560),
        (7, 32 * 33),
    ] {
        for m in [1, 3] {
            agree(rows, cols, m, (rows * cols + m) as u64);
        }
    }
}

/// Each stored weight is its group's nearest code: within half a step (`max|w| / 14`) of the
/// value, and the 4-bit product stays near the f32 one on random data.
#[test]
fn quantisation_error_is_bounded() {
    let (rows, cols) = (50, 256);
    let w = random(rows * cols, 5);
    let q = Q4Matrix::quantize(&w, rows, cols).unwrap();
    for row in 0..rows {
        for g in 0..cols / GROUP {
            let group = &w[row * cols + g * GROUP..][..GROUP];
            let amax = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (t, &v) in group.iter().enumerate() {
                // Half a step of the bf16-rounded scale (within 2^-8 of max|w| / 7).
                let d = (q.dequantized(row, g * GROUP + t) - v).abs();
                assert!(
                    d <= amax / 14.0 * (1.0 + 1.0 / 128.0),
                    "row {row} group {g}: {d}"
                );
            }
        }
    }
    let x = random(cols, 6);
    let got = q.gemv(&x, 1).unwrap();
    let exact: Vec<f32> = w
        .chunks(cols)
        .map(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum())
        .collect();
    let err: f32 = got.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f32 = exact.iter().map(|b| b * b).sum();
    assert!(
        (err / norm).sqrt() < 0.1,
        "relative error {}",
        (err / norm).sqrt()
    );
    assert_eq!(q.bytes(), rows * cols / 2 + rows * cols / GROUP * 2);
}

#[test]
fn zero_rows_and_zero_inputs_give_zeros() {
    let q = Q4Matrix::quantize(&[0.0; 64], 2, 32).unwrap();
    assert_eq!(q.gemv(&random(32, 1), 1).unwrap(), vec![0.0, 0.0]);
    let q = Q4Matrix::quantize(&random(64, 2), 2, 32).unwrap();
    assert_eq!(q.gemv(&[0.0; 32], 1).unwrap(), vec![0.0, 0.0]);
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let e = Q4Matrix::quantize(&[0.5; 40], 2, 20)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("quant_head") && e.contains("20 columns") && e.contains("multiple of 32"),
        "{e}"
    );
    let e = Q4Matrix::quantize(&[0.5; 30], 1, 32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`w`") && e.contains("30"), "{e}");
    let mut w = vec![0.5; 64];
    w[40] = f32::NAN;
    let e = Q4Matrix::quantize(&w, 2, 32).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("40"), "{e}");
    let q = Q4Matrix::quantize(&[0.5; 64], 2, 32).unwrap();
    let e = q.gemv(&[1.0; 31], 1).unwrap_err().to_string();
    assert!(e.contains("`x`") && e.contains("31"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_shapes_agree(rows in 1usize..150, groups in 1usize..12, m in 1usize..4,
                           seed in 0u64..1000) {
        agree(rows, groups * GROUP, m, seed);
    }
}

/// The tensor forms: `from_tensor` quantises a tensor of any float dtype as `quantize` does its
/// f32 values, and `forward` keeps the leading dimensions and refuses a wrong last one.
#[test]
fn tensor_forms_match_the_slice_forms() {
    use candle_core::{DType, Device, Tensor};
    let (rows, cols) = (70, 96);
    let w = random(rows * cols, 11);
    let t = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let widened = f32s(&t);
    let from_tensor = Q4Matrix::from_tensor(&t).unwrap();
    let from_slice = Q4Matrix::quantize(&widened, rows, cols).unwrap();
    let x = random(6 * cols, 12);
    let xt = Tensor::from_vec(x.clone(), (2, 3, cols), &Device::Cpu).unwrap();
    let y = from_tensor.forward(&xt).unwrap();
    assert_eq!(y.dims(), &[2, 3, rows]);
    assert_eq!(f32s(&y), from_slice.gemv(&x, 6).unwrap());
    let bad = Tensor::zeros((2, cols + 1), DType::F32, &Device::Cpu).unwrap();
    let e = from_tensor.forward(&bad).unwrap_err().to_string();
    assert!(e.contains("quant_head") && e.contains("`x`"), "{e}");
}
