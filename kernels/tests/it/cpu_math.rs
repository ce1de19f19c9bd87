//! The vectorisable elementwise math against f64 libm, and its slice functions against plain loops.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::cpu_math::{
    add, causal_conv1d, exp, gelu_tanh, gelu_tanh_mul, gelu_tanh_mul_halves, rms_norm_rows,
    rope_rotate_half, sigmoid, silu_mul_halves, soft_cap, tanh,
};
use proptest::prelude::*;

fn gelu64(x: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + u.tanh())
}

/// Distance in units in the last place between an f32 and the f64 truth.
fn ulps(got: f32, want: f64) -> f64 {
    let want32 = want as f32;
    let ulp = (f32::from_bits(want32.to_bits() + 1) - want32) as f64;
    ((got as f64 - want) / ulp).abs()
}

#[test]
fn exp_is_within_two_ulp_over_its_range() {
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x <= 88.0 {
        worst = worst.max(ulps(exp(x), (x as f64).exp()));
        x += 0.000_731;
    }
    assert!(worst <= 2.0, "worst error {worst} ulp");
    // Clamped outside: finite, normal, monotone.
    assert_eq!(exp(-1000.0), exp(-87.0));
    assert!(exp(-87.0).is_normal() && exp(1000.0).is_finite() && exp(1000.0) == exp(88.0));
    assert_eq!(exp(0.0), 1.0);
}

#[test]
fn sigmoid_and_gelu_follow_f64() {
    let mut x = -30.0f32;
    while x <= 30.0 {
        let s = 1.0 / (1.0 + (-(x as f64)).exp());
        assert!(
            (sigmoid(x) as f64 - s).abs() <= 1e-6 * s + 1e-12,
            "sigmoid({x})"
        );
        let g = gelu64(x as f64);
        let err = (gelu_tanh(x) as f64 - g).abs();
        assert!(
            err <= 1e-6 * g.abs() + 3e-7,
            "gelu({x}): {} vs {g}",
            gelu_tanh(x)
        );
        x += 0.001_37;
    }
    let mut x = -12.0f32;
    while x <= 12.0 {
        let t = (x as f64).tanh();
        assert!(
            (tanh(x) as f64 - t).abs() <= 2e-7,
            "tanh({x}): {} vs {t}",
            tanh(x)
        );
        x += 0.000_913;
    }
    assert_eq!((tanh(-100.0), tanh(100.0)), (-1.0, 1.0));
    let v: Vec<f32> = (0..100_000)
        .map(|i| (i as f32 - 50_000.0) * 0.004)
        .collect();
    for (o, &v) in soft_cap(&v, 30.0).iter().zip(&v) {
        let want = 30.0 * (v as f64 / 30.0).tanh();
        assert!(
            (*o as f64 - want).abs() <= 1e-5,
            "soft_cap({v}): {o} vs {want}"
        );
    }
    // Saturation: no NaN at the extremes.
    assert!(gelu_tanh(-1e4).abs() < 1e-30);
    assert_eq!(gelu_tanh(1e4), 1e4);
    assert!((0.0..1e-37).contains(&sigmoid(-1e4)));
    assert_eq!(sigmoid(1e4), 1.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any length (threaded above 64K elements, vector tails below 8).
    #[test]
    fn gelu_mul_and_rms_norm_match_plain_loops(len in 1usize..160_000, width in 1usize..97, seed in 0u64..1000) {
        let mut rng = Rng::new(seed);
        let a: Vec<f32> = (0..len).map(|_| rng.uniform(-6.0, 6.0)).collect();
        let b: Vec<f32> = (0..len).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let got = gelu_tanh_mul(&a, &b).unwrap();
        for i in 0..len {
            let want = gelu64(a[i] as f64) * b[i] as f64;
            prop_assert!((got[i] as f64 - want).abs() <= 2e-6 * want.abs() + 1e-6, "[{}]", i);
        }
        // The same product on rows of [gate | up].
        let rows = len / width + 1;
        let stacked: Vec<f32> = (0..rows * 2 * width).map(|_| rng.uniform(-6.0, 6.0)).collect();
        let got = gelu_tanh_mul_halves(&stacked, width).unwrap();
        for r in 0..rows {
            for c in 0..width {
                let (g, u) = (stacked[r * 2 * width + c], stacked[r * 2 * width + width + c]);
                let want = gelu64(g as f64) * u as f64;
                prop_assert!((got[r * width + c] as f64 - want).abs() <= 2e-6 * want.abs() + 1e-6);
            }
        }
        let got = silu_mul_halves(&stacked, width).unwrap();
        for r in 0..rows {
            for c in 0..width {
                let (g, u) = (stacked[r * 2 * width + c] as f64, stacked[r * 2 * width + width + c] as f64);
                let want = g / (1.0 + (-g).exp()) * u;
                prop_assert!((got[r * width + c] as f64 - want).abs() <= 2e-6 * want.abs() + 1e-6);
            }
        }
        let x: Vec<f32> = (0..rows * width).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let scale: Vec<f32> = (0..width).map(|_| rng.uniform(0.5, 1.5)).collect();
        let got = rms_norm_rows(&x, &scale, 1e-6).unwrap();
        for r in 0..rows {
            let row = &x[r * width..(r + 1) * width];
            let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / width as f64;
            for c in 0..width {
                let want = row[c] as f64 / (ms + 1e-6).sqrt() * scale[c] as f64;
                let g = got[r * width + c] as f64;
                prop_assert!((g - want).abs() <= 2e-6 * (1.0 + want.abs()), "row {} col {}", r, c);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The convolution against its definition, `[state; x]` tap by tap, across the state/input
    /// border (T < K − 1 too) and the threading threshold; the residual add alongside.
    #[test]
    fn causal_conv1d_and_add_match_plain_loops(
        batch in 1usize..3, t in 1usize..700, c in 1usize..70, k in 1usize..5, seed in 0u64..1000,
    ) {
        let mut rng = Rng::new(seed);
        let mut v = |n: usize| (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<f32>>();
        let (x, state, taps, bias) = (v(batch * t * c), v(batch * (k - 1) * c), v(k * c), v(c));
        let got = causal_conv1d(&x, &state, &taps, &bias, (batch, t, c)).unwrap();
        for b in 0..batch {
            for i in 0..t {
                for ch in 0..c {
                    let mut want = bias[ch] as f64;
                    for tap in 0..k {
                        let r = i + tap; // row of [state; x]
                        let xs = if r < k - 1 {
                            state[(b * (k - 1) + r) * c + ch]
                        } else {
                            x[(b * t + r - (k - 1)) * c + ch]
                        };
                        want += taps[tap * c + ch] as f64 * xs as f64;
                    }
                    let g = got[(b * t + i) * c + ch] as f64;
                    prop_assert!((g - want).abs() <= 1e-5, "b {} t {} c {}: {} vs {}", b, i, ch, g, want);
                }
            }
        }
        let sum = add(&x, &x).unwrap();
        prop_assert!(sum.iter().zip(&x).all(|(s, x)| *s == 2.0 * x));
    }
}

#[test]
fn rope_rotates_the_first_pairs_of_each_head() {
    // 2 rows, 2 heads of 6, rotary 4: pairs (0, 2) and (1, 3) turn, dims 4 and 5 pass through.
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let angle = |r: usize, i: usize| (r as f32 + 1.0) * (i as f32 + 0.3);
    let cos: Vec<f32> = (0..4).map(|j| angle(j / 2, j % 2).cos()).collect();
    let sin: Vec<f32> = (0..4).map(|j| angle(j / 2, j % 2).sin()).collect();
    let got = rope_rotate_half(&x, &cos, &sin, (2, 6, 4)).unwrap();
    for r in 0..2 {
        for h in 0..2 {
            let base = r * 12 + h * 6;
            for i in 0..2 {
                let (c, s) = (cos[r * 2 + i], sin[r * 2 + i]);
                let (a, b) = (x[base + i], x[base + i + 2]);
                assert_eq!(got[base + i], a * c - b * s);
                assert_eq!(got[base + i + 2], b * c + a * s);
            }
            assert_eq!(&got[base + 4..base + 6], &x[base + 4..base + 6]);
        }
    }
    assert!(rope_rotate_half(&x, &cos, &sin, (2, 6, 5)).is_err());
    assert!(rope_rotate_half(&x, &cos[..3], &sin, (2, 6, 4)).is_err());
}

#[test]
fn tensor_forms_match_candle() {
    use candle_core::{DType, Device, Tensor};
    use kernels::cpu_math::{add_tensors, glu_halves, Glu};
    // Seeded: a fresh random draw each run once exceeded a bound set too close to the error.
    let x = Tensor::from_vec(
        Rng::new(41).vec(3 * 5 * 14, -4.0, 4.0),
        (3, 5, 14),
        &Device::Cpu,
    )
    .unwrap();
    let (g, u) = (x.narrow(2, 0, 7).unwrap(), x.narrow(2, 7, 7).unwrap());
    for (act, want) in [
        (Glu::Silu, (g.silu().unwrap() * &u).unwrap()),
        (Glu::GeluTanh, (g.gelu().unwrap() * &u).unwrap()),
    ] {
        // f32 on the CPU (fused) and bf16 (candle's ops) both give act(g) ⊙ u.
        let fused = glu_halves(&x, act).unwrap();
        let d: f32 = (fused - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-5, "{act:?}: {d}");
        let half = glu_halves(&x.to_dtype(DType::BF16).unwrap(), act).unwrap();
        let d: f32 = (half.to_dtype(DType::F32).unwrap() - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        // bf16 rounds g, u, candle's bf16 activation (its exp and division) and the product to
        // 8 significant bits (2^-9 relative each): about 1% of the largest value (1.07% at worst
        // over 400 random draws of N(0, 2) inputs), bounded at 2%.
        let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(d <= 0.02 * scale, "{act:?} bf16: {d} (max |value| {scale})");
    }
    let y = Tensor::from_vec(
        Rng::new(42).vec(3 * 5 * 14, -2.0, 2.0),
        (3, 5, 14),
        &Device::Cpu,
    )
    .unwrap();
    let sum = add_tensors(&x, &y).unwrap();
    let want = (&x + &y).unwrap();
    assert_eq!(
        sum.to_vec3::<f32>().unwrap(),
        want.to_vec3::<f32>().unwrap()
    );
    // A transposed (non-contiguous) operand takes candle's path.
    let yt = y
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert_eq!(
        add_tensors(&x, &yt).unwrap().to_vec3::<f32>().unwrap(),
        want.to_vec3::<f32>().unwrap()
    );
}

#[test]
fn mismatched_lengths_are_errors() {
    let e = causal_conv1d(&[0.0; 6], &[0.0; 2], &[0.0; 8], &[0.0; 2], (1, 3, 2)).unwrap_err();
    assert!(e.to_string().contains("state"), "{e}");
    assert!(add(&[1.0; 2], &[1.0]).is_err());
    let e = gelu_tanh_mul(&[1.0; 4], &[1.0; 3]).unwrap_err().to_string();
    assert!(e.contains("gelu_tanh_mul") && e.contains("3"), "{e}");
    let e = rms_norm_rows(&[1.0; 7], &[1.0; 2], 1e-6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("7 elements are not rows of 2"), "{e}");
}

/// Smart Bird's sketch log-probabilities: the fused pass against the same formula in f64, with
/// padding keys (−∞ in the mask, −∞ out), rows of every batch, a row length off the vector
/// width; its tensor form against candle's `log_softmax` of the scaled, masked scores.
#[test]
fn scaled_masked_log_softmax_matches_f64() {
    use candle_core::{Device, Tensor, D};
    use kernels::cpu_math::scaled_masked_log_softmax;
    let (batch, rows, n, scale) = (3, 5, 37, 0.25f32);
    let mut rng = Rng::new(17);
    let x: Vec<f32> = (0..batch * rows * n)
        .map(|_| rng.uniform(-30.0, 30.0))
        .collect();
    // Batch b pads its last 4b keys.
    let mask: Vec<f32> = (0..batch * n)
        .map(|e| {
            if e % n >= n - 4 * (e / n) {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mut got = x.clone();
    scaled_masked_log_softmax(&mut got, &mask, n, scale).unwrap();
    for (r, (got, x)) in got.chunks(n).zip(x.chunks(n)).enumerate() {
        let m = &mask[(r / rows) * n..][..n];
        let s: Vec<f64> = x
            .iter()
            .zip(m)
            .map(|(&x, &m)| x as f64 * scale as f64 + m as f64)
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        for (j, (&g, &s)) in got.iter().zip(&s).enumerate() {
            let want = s - lse;
            if want == f64::NEG_INFINITY {
                assert_eq!(g, f32::NEG_INFINITY, "row {r}, key {j}: padding");
            } else {
                assert!(
                    (g as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
                    "row {r}, key {j}: {g} vs {want}"
                );
            }
        }
    }
    let dev = Device::Cpu;
    let xt = Tensor::from_vec(x.clone(), (batch, rows, n), &dev).unwrap();
    let mt = Tensor::from_vec(mask.clone(), (batch, n), &dev).unwrap();
    let fused =
        kernels::fused::scaled_masked_log_softmax_in_place(xt.copy().unwrap(), scale as f64, &mt)
            .unwrap();
    let plain = candle_nn::ops::log_softmax(
        &(&xt * scale as f64)
            .unwrap()
            .broadcast_add(&mt.unsqueeze(1).unwrap())
            .unwrap(),
        D::Minus1,
    )
    .unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (
        fused.flatten_all().unwrap().to_vec1().unwrap(),
        plain.flatten_all().unwrap().to_vec1().unwrap(),
    );
    for (a, b) in a.iter().zip(&b) {
        assert!(
            a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{a} vs {b}"
        );
    }
    assert!(scaled_masked_log_softmax(&mut x.clone(), &mask, 0, scale).is_err());
    assert!(scaled_masked_log_softmax(&mut x[1..].to_vec(), &mask, n, scale).is_err());
    // The candle-ops form (a strided view is not overwritten) agrees too, and leaves x alone.
    let strided = xt
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let other =
        kernels::fused::scaled_masked_log_softmax_in_place(strided.clone(), scale as f64, &mt)
            .unwrap();
    let other: Vec<f32> = other.flatten_all().unwrap().to_vec1().unwrap();
    for (a, b) in other.iter().zip(&b) {
        assert!(
            a == b || (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{a} vs {b}"
        );
    }
    let kept: Vec<f32> = strided.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(kept, x);
    let e =
        kernels::fused::scaled_masked_log_softmax_in_place(xt, 1.0, &mt.narrow(1, 0, 5).unwrap())
            .unwrap_err()
            .to_string();
    assert!(e.contains("mask") && e.contains("[3, 5]"), "{e}");
}
