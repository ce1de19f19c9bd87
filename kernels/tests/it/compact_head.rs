//! The lossless 12-bit head: every weight decodes to its exact bf16 bits (one by one and by whole
//! rows, rows with and without exceptions, special values), the threaded GEMV and the blocked
//! product of many inputs against the reference (the decoded values multiplied in f64) and
//! against the plain bf16 GEMV on odd shapes, and bad input.
use half::bf16;
use kernels::compact_head::{compact_gemv_reference, CompactBf16Matrix, CHUNK};
use proptest::prelude::*;

use crate::common::Rng;

/// bf16 values `scale · u · 2^e` with `u` uniform in ±[0.5, 1) and `e` uniform in
/// `0..binades`: the row's high bytes take about `2 · binades / 2` values (sign and the top seven
/// exponent bits), so more than 16 (exceptions) from about 17 binades on.
fn values(n: usize, binades: u32, seed: u64) -> Vec<bf16> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let u = rng.uniform(0.5, 1.0) * if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
            let e = (rng.next_u64() % u64::from(binades.max(1))) as i32;
            bf16::from_f32(u * 2f32.powi(e - 12))
        })
        .collect()
}

fn assert_lossless(w: &[bf16], rows: usize, cols: usize) -> CompactBf16Matrix {
    let c = CompactBf16Matrix::encode(w, rows, cols).unwrap();
    for (i, v) in w.iter().enumerate() {
        let got = c.value(i / cols, i % cols);
        assert_eq!(
            got.to_bits(),
            v.to_bits(),
            "[{rows}, {cols}] ({}, {}): {got} stored for {v}",
            i / cols,
            i % cols
        );
    }
    // Whole rows decoded to f32 (the lookups and the blocked product): each value the f32 whose
    // top half is the bf16, NaN payloads included; all rows at once, then the last alone.
    let mut all = vec![0.0f32; rows * cols];
    c.decode_rows(0, &mut all).unwrap();
    let mut last = vec![0.0f32; cols];
    c.decode_rows(rows - 1, &mut last).unwrap();
    for (i, v) in w.iter().enumerate() {
        let want = u32::from(v.to_bits()) << 16;
        assert_eq!(all[i].to_bits(), want, "[{rows}, {cols}] value {i}");
    }
    for (got, v) in last.iter().zip(&w[(rows - 1) * cols..]) {
        assert_eq!(got.to_bits(), u32::from(v.to_bits()) << 16);
    }
    c
}

/// `|got − want| ≤ 1e-6 · Σ|w·x|` per output: f32 sums in another order than the f64 reference.
/// Both entry points: the GEMV, and the product that takes it up to four inputs and decodes
/// blocks of rows for gemm beyond.
fn assert_gemv_close(c: &CompactBf16Matrix, w: &[bf16], x: &[f32], m: usize) {
    let want = compact_gemv_reference(c, x, m).unwrap();
    if m <= 8 {
        assert_close(c, w, x, m, &c.gemv(x, m).unwrap(), &want);
    }
    assert_close(c, w, x, m, &c.matmul(x, m).unwrap(), &want);
}

fn assert_close(c: &CompactBf16Matrix, w: &[bf16], x: &[f32], m: usize, got: &[f32], want: &[f32]) {
    let (rows, cols) = (c.rows(), c.cols());
    assert_eq!(got.len(), m * rows);
    for t in 0..m {
        for r in 0..rows {
            let magnitude: f32 = (0..cols)
                .map(|k| (w[r * cols + k].to_f32() * x[t * cols + k]).abs())
                .sum();
            let (g, e) = (got[t * rows + r], want[t * rows + r]);
            assert!(
                (g - e).abs() <= 1e-6 * magnitude + f32::MIN_POSITIVE,
                "[{rows}, {cols}] m {m} token {t} row {r}: {g} vs {e} (Σ|w·x| {magnitude})"
            );
        }
    }
}

#[test]
fn every_weight_decodes_to_its_bf16() {
    // Few binades (one table, no exceptions), many (exceptions), N(0, 0.02) as 2B4T-like rows.
    for (binades, rows, cols) in [(1, 3, 32), (6, 5, 96), (20, 4, 2560), (40, 7, 64)] {
        let w = values(rows * cols, binades, u64::from(binades));
        let c = assert_lossless(&w, rows, cols);
        if binades <= 6 {
            assert_eq!(c.exception_count(), 0, "{binades} binades fit a table");
        } else {
            assert!(c.exception_count() > 0, "{binades} binades need exceptions");
        }
    }
}

#[test]
fn tables_of_exactly_sixteen_and_seventeen_high_bytes() {
    // 16 distinct high bytes: all in the table, code 15 an ordinary value; 17: one exception.
    for distinct in [16u16, 17] {
        let cols = 64;
        let w: Vec<bf16> = (0..cols as u16)
            .map(|i| bf16::from_bits(((i % distinct) + 0x30) << 8 | ((i * 37) & 0xff)))
            .collect();
        let c = assert_lossless(&w, 1, cols);
        // 17: the high bytes 0x30 + 0..13 appear four times, 0x30 + 13..17 three; the table
        // keeps the 13 commonest and, among the ties, the two smallest, so 0x3f and 0x40 (three
        // weights each) are the exceptions.
        let expected = if distinct == 16 { 0 } else { 6 };
        assert_eq!(
            c.exception_count(),
            expected,
            "{distinct} distinct high bytes"
        );
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 - 31.5) / 7.0).collect();
        assert_gemv_close(&c, &w, &x, 1);
    }
}

#[test]
fn special_values_decode_exactly() {
    let specials = [
        0x0000u16, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffff, 0x0001, 0x807f, 0x7f7f, 0xff7f, 0x3f80,
        0xbf80,
    ];
    let mut w = values(4 * 64, 30, 9);
    for (i, &s) in specials.iter().enumerate() {
        w[i * 19] = bf16::from_bits(s);
    }
    assert_lossless(&w, 4, 64);
}

#[test]
fn gemv_matches_the_reference_on_odd_shapes() {
    // Rows around the task size (64) and in fours, one chunk, odd chunk counts, 2B4T's width.
    for (rows, cols) in [
        (1, 32),
        (3, 32),
        (63, 64),
        (64, 96),
        (65, 160),
        (5, 32 * 9),
        (130, 2560),
    ] {
        for (m, binades) in [(1, 4), (3, 24), (5, 6), (9, 30)] {
            let w = values(rows * cols, binades, (rows * cols + m) as u64);
            let mut rng = Rng::new((rows + cols) as u64);
            let x = rng.vec(m * cols, -2.0, 2.0);
            let c = CompactBf16Matrix::encode(&w, rows, cols).unwrap();
            assert_gemv_close(&c, &w, &x, m);
        }
    }
}

#[test]
fn models_take_the_form_for_bf16_matrices_on_the_cpu() {
    use candle_core::{DType, Device, Tensor};
    let t = |shape: &[usize], dtype| Tensor::zeros(shape, dtype, &Device::Cpu).unwrap();
    assert!(CompactBf16Matrix::suits(&t(&[3, 64], DType::BF16)));
    for (shape, dtype) in [
        (&[3, 64][..], DType::F32),
        (&[3, 64], DType::F16),
        (&[3, 48], DType::BF16),
        (&[3, 0], DType::BF16),
        (&[64], DType::BF16),
        (&[2, 3, 64], DType::BF16),
    ] {
        assert!(
            !CompactBf16Matrix::suits(&t(shape, dtype)),
            "{shape:?} {dtype:?}"
        );
    }
}

#[test]
fn many_inputs_take_blocks_of_decoded_rows() {
    // More rows than one decoded block (2^19 values: 16384 rows of 32), so a block boundary
    // falls inside the matrix and the last block is partial; exceptions in some rows.
    let (rows, cols, m) = (16384 + 77, 32, 6);
    let w = values(rows * cols, 18, 5);
    let c = CompactBf16Matrix::encode(&w, rows, cols).unwrap();
    assert!(c.exception_count() > 0);
    let x = Rng::new(6).vec(m * cols, -1.0, 1.0);
    assert_gemv_close(&c, &w, &x, m);
}

#[test]
fn gemv_matches_the_plain_bf16_gemv() {
    let (rows, cols) = (97, 2560);
    let w = values(rows * cols, 22, 3);
    let x = Rng::new(4).vec(cols, -1.0, 1.0);
    let c = CompactBf16Matrix::encode(&w, rows, cols).unwrap();
    let got = c.gemv(&x, 1).unwrap();
    let plain = kernels::cpu_linear::gemv_bf16(&x, 1, &w, rows, cols).unwrap();
    for (r, (g, p)) in got.iter().zip(&plain).enumerate() {
        let magnitude: f32 = (0..cols)
            .map(|k| (w[r * cols + k].to_f32() * x[k]).abs())
            .sum();
        assert!((g - p).abs() <= 1e-6 * magnitude, "row {r}: {g} vs {p}");
    }
}

#[test]
fn bad_input_is_an_error() {
    let w = values(2 * 48, 4, 1);
    let e = CompactBf16Matrix::encode(&w, 2, 48)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("48 columns") && e.contains("multiple of 32"),
        "{e}"
    );
    let e = CompactBf16Matrix::encode(&w, 4, 32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("96") && e.contains("[4, 32]"), "{e}");
    let e = CompactBf16Matrix::encode(&[], 0, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 columns"), "{e}");
    let c = CompactBf16Matrix::encode(&w[..64], 2, CHUNK).unwrap();
    assert!(c.gemv(&[1.0; 31], 1).is_err());
    assert!(c.matmul(&[1.0; 32 * 6 - 1], 6).is_err());
    // Decoding: whole rows only, inside the matrix.
    for (first, len) in [(0, 31), (1, 64), (2, 32), (0, 96)] {
        let e = c
            .decode_rows(first, &mut vec![0.0; len])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{len} values")) && e.contains("[2, 32]"),
            "{e}"
        );
    }

    // From tensors: bf16, and f32 holding bf16 values, load; other f32 values and f16 do not.
    let dev = candle_core::Device::Cpu;
    let t = candle_core::Tensor::from_vec(w[..64].to_vec(), (2, 32), &dev).unwrap();
    let from_bf16 = CompactBf16Matrix::from_tensor(&t).unwrap();
    let t32 = t.to_dtype(candle_core::DType::F32).unwrap();
    let from_f32 = CompactBf16Matrix::from_tensor(&t32).unwrap();
    assert_eq!(from_bf16.value(1, 31), from_f32.value(1, 31));
    let off = (t32.clone() * 1.001).unwrap();
    let e = CompactBf16Matrix::from_tensor(&off)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a bf16") && e.contains("index 0"), "{e}");
    let f16 = t.to_dtype(candle_core::DType::F16).unwrap();
    let e = CompactBf16Matrix::from_tensor(&f16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f16"), "{e}");
    // The candle entry point checks the input's width and keeps its leading dims.
    let x = candle_core::Tensor::ones((2, 3, 31), candle_core::DType::F32, &dev).unwrap();
    let e = from_bf16.forward(&x).unwrap_err().to_string();
    assert!(e.contains("[.., 32]"), "{e}");
    let x = candle_core::Tensor::ones((2, 3, 32), candle_core::DType::F32, &dev).unwrap();
    assert_eq!(from_bf16.forward(&x).unwrap().dims(), &[2, 3, 2]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn lossless_and_close_on_random_shapes(
        rows in 1usize..40, chunks in 1usize..6, m in 1usize..8, binades in 1u32..40,
        seed in 0u64..1000
    ) {
        let cols = chunks * CHUNK;
        let w = values(rows * cols, binades, seed);
        let c = assert_lossless(&w, rows, cols);
        let x = Rng::new(seed + 1).vec(m * cols, -3.0, 3.0);
        assert_gemv_close(&c, &w, &x, m);
    }
}
