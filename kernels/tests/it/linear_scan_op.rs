//! The scan as a candle op on CPU tensors.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use candle_core::{DType, Device, Tensor};
use kernels::linear_scan::{linear_scan, linear_scan_reference, ScanInput, ScanShape};

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) % 1000) as f32 / 1000.0)
        .collect()
}

#[test]
fn op_matches_reference_and_returns_final_state() {
    let (b, t, c) = (2, 50, 7);
    let a = data(b * t * c, 1);
    let x: Vec<f32> = data(b * t * c, 2).iter().map(|v| v - 0.5).collect();
    let h0 = data(b * c, 3);
    let reset: Vec<u8> = (0..b * t).map(|i| u8::from(i % 13 == 0)).collect();
    let dev = Device::Cpu;
    let (h, h_last) = linear_scan(
        &Tensor::from_slice(&a, (b, t, c), &dev).unwrap(),
        &Tensor::from_slice(&x, (b, t, c), &dev).unwrap(),
        Some(&Tensor::from_slice(&h0, (b, c), &dev).unwrap()),
        Some(&Tensor::from_slice(&reset, (b, t), &dev).unwrap()),
    )
    .unwrap();
    let shape = ScanShape::new(b, t, c).unwrap();
    let want = linear_scan_reference(&ScanInput {
        shape,
        a: &a,
        x: &x,
        h0: Some(&h0),
        reset: Some(&reset),
    })
    .unwrap();
    assert_eq!(h.dims(), &[b, t, c]);
    assert_eq!(h.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.h);
    assert_eq!(h_last.dims(), &[b, c]);
    assert_eq!(
        h_last.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want.h_last
    );
}

#[test]
fn op_runs_bf16_with_f32_state() {
    let dev = Device::Cpu;
    let a = Tensor::full(0.5f32, (1, 3, 2), &dev)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let x = Tensor::ones((1, 3, 2), DType::BF16, &dev).unwrap();
    let (h, h_last) = linear_scan(&a, &x, None, None).unwrap();
    assert_eq!(h.dtype(), DType::BF16);
    assert_eq!(h_last.dtype(), DType::F32);
    // 1, 1.5, 1.75
    assert_eq!(h_last.to_vec2::<f32>().unwrap(), vec![vec![1.75, 1.75]]);
}

#[test]
fn op_accepts_non_contiguous_inputs() {
    let dev = Device::Cpu;
    // [b, c, t] transposed to [b, t, c].
    let a = Tensor::from_slice(&data(2 * 4 * 9, 5), (2, 4, 9), &dev)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let x = Tensor::from_slice(&data(2 * 4 * 9, 6), (2, 4, 9), &dev)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let (h, _) = linear_scan(&a, &x, None, None).unwrap();
    let (h2, _) = linear_scan(
        &a.contiguous().unwrap(),
        &x.contiguous().unwrap(),
        None,
        None,
    )
    .unwrap();
    assert_eq!(h.to_vec3::<f32>().unwrap(), h2.to_vec3::<f32>().unwrap());
}

#[test]
fn op_rejects_bad_inputs_with_clear_errors() {
    let dev = Device::Cpu;
    let a = Tensor::ones((1, 4, 3), DType::F32, &dev).unwrap();
    let x = Tensor::ones((1, 4, 3), DType::F32, &dev).unwrap();
    let err = |r: candle_core::Result<(Tensor, Tensor)>| r.unwrap_err().to_string();
    let e = err(linear_scan(
        &a,
        &Tensor::ones((1, 4, 2), DType::F32, &dev).unwrap(),
        None,
        None,
    ));
    assert!(
        e.contains("`a` has shape [1, 4, 3], expected [1, 4, 2]"),
        "{e}"
    );
    let e = err(linear_scan(
        &a.to_dtype(DType::F16).unwrap(),
        &x.to_dtype(DType::F16).unwrap(),
        None,
        None,
    ));
    assert!(e.contains("dtype F16, expected f32 or bf16"), "{e}");
    let e = err(linear_scan(
        &a,
        &x.to_dtype(DType::BF16).unwrap(),
        None,
        None,
    ));
    assert!(
        e.contains("expected f32 or bf16, the same for a and x"),
        "{e}"
    );
    let e = err(linear_scan(
        &a,
        &x,
        Some(&Tensor::zeros((1, 4), DType::F32, &dev).unwrap()),
        None,
    ));
    assert!(e.contains("`h0` has shape [1, 4], expected [1, 3]"), "{e}");
    let e = err(linear_scan(
        &a,
        &x,
        None,
        Some(&Tensor::zeros((1, 4), DType::F32, &dev).unwrap()),
    ));
    assert!(e.contains("`reset` has dtype F32, expected u8"), "{e}");
    let e = err(linear_scan(
        &Tensor::ones((4, 3), DType::F32, &dev).unwrap(),
        &Tensor::ones((4, 3), DType::F32, &dev).unwrap(),
        None,
        None,
    ));
    assert!(e.contains("expected [batch, seq_len, channels]"), "{e}");
    let e = err(linear_scan(
        &Tensor::ones((1, 0, 3), DType::F32, &dev).unwrap(),
        &Tensor::ones((1, 0, 3), DType::F32, &dev).unwrap(),
        None,
        None,
    ));
    assert!(e.contains("empty input (seq_len is 0)"), "{e}");
}
