//! The decode GEMV against a plain triple loop, and `linear` against candle's matmul on every path.
#![allow(clippy::unwrap_used)]

use crate::common::{f32s, Rng};
use candle_core::{DType, Device, Tensor};
use kernels::cpu_linear::{
    bf16_if_exact, gemv, gemv_bf16, linear, linear_add, linear_glu, matmul, matmul_with, Epilogue,
    Weights,
};
use kernels::cpu_math::{add_tensors, gelu_tanh_mul_halves, glu_halves, silu_mul_halves, Glu};
use proptest::prelude::*;

fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for t in 0..m {
        for j in 0..n {
            y[t * n + j] = (0..k)
                .map(|i| f64::from(x[t * k + i]) * f64::from(w[j * k + i]))
                .sum::<f64>() as f32;
        }
    }
    y
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "[{i}]: {g} vs {w}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn gemv_matches_the_plain_loop(m in 1usize..6, n in 1usize..200, k in 1usize..300, seed in 0u64..1000) {
        let mut rng = Rng::new(seed);
        let x = rng.vec(m * k, -1.0, 1.0);
        let w = rng.vec(n * k, -1.0, 1.0);
        close(&gemv(&x, m, &w, n, k).unwrap(), &naive(&x, m, &w, n, k));
    }

    /// bf16 weights are widened exactly: the products of their f32 widening.
    #[test]
    fn bf16_gemv_matches_the_plain_loop_on_the_widened_weights(
        m in 1usize..6, n in 1usize..200, k in 1usize..300, seed in 0u64..1000,
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.vec(m * k, -1.0, 1.0);
        let wb: Vec<half::bf16> =
            (0..n * k).map(|_| half::bf16::from_f32(rng.uniform(-1.0, 1.0))).collect();
        let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        close(&gemv_bf16(&x, m, &wb, n, k).unwrap(), &naive(&x, m, &wide, n, k));
    }
}

/// Large enough to be threaded: tasks of 64 rows, rows in fours within a task and one at a time
/// after the last four (n not a multiple of 4 or of 64), rows whose length leaves 8- and
/// 1-element tails, several inputs.
#[test]
fn threaded_gemv_matches_the_plain_loop_at_task_and_row_edges() {
    let mut rng = Rng::new(5);
    for (m, n, k) in [
        (1, 327, 263),
        (3, 1030, 256),
        (1, 4099, 40),
        (2, 258, 768),
        (4, 65, 1031),
    ] {
        assert!(n * k >= kernels::cpu_linear::PARALLEL_MIN_WEIGHTS);
        let x = rng.vec(m * k, -1.0, 1.0);
        let w = rng.vec(n * k, -1.0, 1.0);
        close(&gemv(&x, m, &w, n, k).unwrap(), &naive(&x, m, &w, n, k));
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        close(
            &gemv_bf16(&x, m, &wb, n, k).unwrap(),
            &naive(&x, m, &wide, n, k),
        );
    }
}

/// Pools of 1, 2 and 3 threads (the product shares its rows and panels out differently on each),
/// with their sizes.
fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1, 2, 3]
        .into_iter()
        .map(|threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            (threads, pool)
        })
        .collect()
}

/// A product's random operands, uniform in ±1: `x [m, k]`, `w [n, k]`, `w` rounded to bf16, and
/// a bias `[n]`.
fn random_product(
    rng: &mut Rng,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f32>, Vec<f32>, Vec<half::bf16>, Vec<f32>) {
    let x = rng.vec(m * k, -1.0, 1.0);
    let w = rng.vec(n * k, -1.0, 1.0);
    let bias = rng.vec(n, -1.0, 1.0);
    let wb = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
    (x, w, wb, bias)
}

fn with_bias(mut y: Vec<f32>, n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    if let Some(bias) = bias {
        for row in y.chunks_mut(n) {
            row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// The prefill product, f32 and bf16 weights, with and without a bias, on odd shapes.
    #[test]
    fn matmul_matches_the_plain_loop(
        m in 1usize..40, n in 1usize..90, k in 1usize..200, biased: bool, seed in 0u64..1000,
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.vec(m * k, -1.0, 1.0);
        let w = rng.vec(n * k, -1.0, 1.0);
        let bias = rng.vec(n, -1.0, 1.0);
        let bias = biased.then_some(bias.as_slice());
        let want = with_bias(naive(&x, m, &w, n, k), n, bias);
        close(&matmul(&x, m, Weights::F32(&w), n, k, bias).unwrap(), &want);
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let want = with_bias(naive(&x, m, &wide, n, k), n, bias);
        close(&matmul(&x, m, Weights::Bf16(&wb), n, k, bias).unwrap(), &want);
    }
}

#[test]
fn bf16_matmul_over_several_widened_blocks_and_from_concurrent_tasks() {
    use rayon::prelude::*;
    // 2^19 values a block: 2100 rows of 300 are two blocks and a short third.
    let (m, n, k) = (6, 2100, 300);
    let mut rng = Rng::new(8);
    let x = rng.vec(m * k, -1.0, 1.0);
    let wb: Vec<half::bf16> = (0..n * k)
        .map(|_| half::bf16::from_f32(rng.uniform(-1.0, 1.0)))
        .collect();
    let bias = rng.vec(n, -1.0, 1.0);
    let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
    let want = with_bias(naive(&x, m, &wide, n, k), n, Some(&bias));
    // Several at once on the pool: a thread waiting inside one product may run another's task.
    let got: Vec<Vec<f32>> = (0..4)
        .into_par_iter()
        .map(|_| matmul(&x, m, Weights::Bf16(&wb), n, k, Some(&bias)).unwrap())
        .collect();
    for got in &got {
        close(got, &want);
    }
    let e = matmul(&x, m, Weights::Bf16(&wb), n, k, Some(&bias[1..]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias") && e.contains("2099"), "{e}");
    let e = matmul(&x[1..], m, Weights::F32(&wide), n, k, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x") && e.contains("1799"), "{e}");
}

#[test]
fn linear_agrees_with_candle_on_every_path() {
    let dev = Device::Cpu;
    // Seeded inputs: the same sums every run.
    let mut rng = Rng::new(7);
    let mut randn = |shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::from_vec(rng.vec(n, -2.0, 2.0), shape, &dev).unwrap()
    };
    let w = randn(&[70, 33]);
    let b = randn(&[70]);
    for shape in [
        vec![1, 33],
        vec![1, 1, 33],
        vec![2, 2, 33],
        vec![1, 7, 33],
        vec![3, 33],
    ] {
        let x = randn(&shape);
        let want = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let got = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(got.dims(), want.dims());
        close(&f32s(&got), &f32s(&want));
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        close(&f32s(&linear(&x, &w, None).unwrap()), &f32s(&want));
    }
    // bf16 weights under f32 activations: the bf16 GEMV for a few rows, the widening matmul for
    // more; f32 out either way, equal to the f32 widening's products.
    let wb = w.to_dtype(DType::BF16).unwrap();
    let wide = wb.to_dtype(DType::F32).unwrap();
    for rows in [1, 3, 9] {
        let x = randn(&[rows, 33]);
        let got = linear(&x, &wb, Some(&b)).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let want = x
            .matmul(&wide.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        close(&f32s(&got), &f32s(&want));
    }
    // Other dtypes take candle's path.
    let xb = Tensor::ones((1, 33), DType::BF16, &dev).unwrap();
    let wb = w.to_dtype(DType::BF16).unwrap();
    assert_eq!(linear(&xb, &wb, None).unwrap().dtype(), DType::BF16);
    // A non-contiguous input is made contiguous.
    let xt = randn(&[33, 1]).t().unwrap();
    close(
        &f32s(&linear(&xt, &w, None).unwrap()),
        &f32s(&xt.matmul(&w.t().unwrap()).unwrap()),
    );
}

#[test]
fn only_values_bf16_holds_exactly_are_kept_in_bf16() {
    let dev = Device::Cpu;
    let exact = Tensor::new(&[[1.0f32, -0.5, 3.0], [0.0, 2.5, -1.0]], &dev).unwrap();
    let kept = bf16_if_exact(exact.clone()).unwrap();
    assert_eq!(kept.dtype(), DType::BF16);
    assert_eq!(f32s(&kept), f32s(&exact));
    let inexact = Tensor::new(&[[1.0f32, 0.1]], &dev).unwrap();
    assert_eq!(bf16_if_exact(inexact).unwrap().dtype(), DType::F32);
}

/// The AVX-512 product's blocking at its edges: `k` across 256-step panels (257, 600), rows
/// across 192-row passes, 12-row tiles and 768-row chunks (193, 400, 790), columns across
/// 32-column panels and 8-panel groups (33, 300), one panel for several threads (rows split), on
/// pools of 1, 2 and 3 threads; f32 and bf16 weights, with and without a bias. Where AVX-512 is missing `matmul`
/// takes `gemm` and the same checks hold.
#[test]
fn matmul_at_the_blocking_edges_on_several_pools() {
    if !kernels::cpu_gemm::available() {
        eprintln!(
            "no AVX-512 (F, BW, VL) here, or FRUGAL_NO_AVX512 set: the blocking checks run on the gemm crate's path instead"
        );
    }
    let mut rng = Rng::new(11);
    for (_, pool) in pools() {
        for (m, n, k) in [
            (193, 33, 257),
            (400, 300, 600),
            (37, 70, 513),
            (25, 7, 16),
            (13, 600, 31),
            (5, 1, 1),
            (790, 40, 20),
        ] {
            let (x, w, wb, bias) = random_product(&mut rng, m, n, k);
            let wide: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
            for bias in [None, Some(bias.as_slice())] {
                let (f32_got, bf16_got) = pool.install(|| {
                    (
                        matmul(&x, m, Weights::F32(&w), n, k, bias).unwrap(),
                        matmul(&x, m, Weights::Bf16(&wb), n, k, bias).unwrap(),
                    )
                });
                // f32 sums of k products: rounding grows with k (a missed or doubled product
                // would be off by ~0.1).
                let tol = 1e-5 + 2e-6 * k as f32;
                let near = |got: &[f32], want: &[f32]| {
                    assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (g - w).abs() <= tol,
                            "[m {m}, n {n}, k {k}] [{i}]: {g} vs {w}"
                        );
                    }
                };
                near(&f32_got, &with_bias(naive(&x, m, &w, n, k), n, bias));
                near(&bf16_got, &with_bias(naive(&x, m, &wide, n, k), n, bias));
            }
        }
    }
}

/// The epilogues inside the product give what the product then a second pass gives, to the bit
/// where the sums are the same (the same sums in the same order, then the same functions): a
/// residual added, and both GLUs, whose `[g | u]` halves the product pairs up panel by panel; a
/// GLU over `k` of 257 to 512 sums in one step what the plain product sums in two (within
/// rounding), and past 512 takes the second pass. Shapes across the blocking's edges: `k` in one
/// step (16, 31), in two (257, 512) and in several (513, 600), halves
/// of 1, 17, 33 and 150 columns (part panels, several groups), rows across tiles, passes and
/// chunks; pools of 1, 2 and 3 threads; f32 and bf16 weights, with and without a bias. And the
/// errors: an odd `n` for a GLU, a residual of the wrong length.
#[test]
fn matmul_epilogues_match_the_product_then_a_second_pass() {
    let mut rng = Rng::new(23);
    for (threads, pool) in pools() {
        for (m, n, k) in [
            (193, 66, 257),
            (400, 300, 600),
            (25, 2, 16),
            (13, 34, 31),
            (30, 1000, 513),
            (40, 64, 512),
            (790, 40, 20),
        ] {
            let (x, w, wb, bias) = random_product(&mut rng, m, n, k);
            let residual = rng.vec(m * n, -1.0, 1.0);
            for weights in [Weights::F32(&w), Weights::Bf16(&wb)] {
                for bias in [None, Some(bias.as_slice())] {
                    pool.install(|| {
                        let plain = matmul(&x, m, weights, n, k, bias).unwrap();
                        let with = |e| matmul_with(&x, m, weights, n, k, bias, e).unwrap();
                        let added: Vec<f32> = plain.iter().zip(&residual).map(|(y, r)| y + r).collect();
                        let cases = [
                            ("add", with(Epilogue::Add(&residual)), added),
                            (
                                "gelu",
                                with(Epilogue::Glu(Glu::GeluTanh)),
                                gelu_tanh_mul_halves(&plain, n / 2).unwrap(),
                            ),
                            (
                                "silu",
                                with(Epilogue::Glu(Glu::Silu)),
                                silu_mul_halves(&plain, n / 2).unwrap(),
                            ),
                        ];
                        for (what, got, want) in cases {
                            assert_eq!(got.len(), want.len(), "{what} [m {m}, n {n}, k {k}]");
                            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                                let at = format!(
                                    "{what} [m {m}, n {n}, k {k}] threads {threads} [{i}]: {g} vs {w}"
                                );
                                if what == "add" || k <= 256 {
                                    assert_eq!(g.to_bits(), w.to_bits(), "{at}");
                                } else {
                                    // A GLU takes all of k in one step, the plain product
                                    // 256 at a time: the same sums in another order.
                                    let (row, col) = (i / (n / 2), i % (n / 2));
                                    let (pg, pu) = (plain[row * n + col], plain[row * n + n / 2 + col]);
                                    let tol = (1e-5 + 2e-6 * k as f32) * (1.0 + pg.abs()) * (1.0 + pu.abs());
                                    assert!((g - w).abs() <= tol, "{at}");
                                }
                            }
                        }
                    });
                }
            }
        }
    }
    let (x, w) = (vec![0.5f32; 6 * 4], vec![0.25f32; 3 * 4]);
    let err = matmul_with(
        &x,
        6,
        Weights::F32(&w),
        3,
        4,
        None,
        Epilogue::Glu(Glu::Silu),
    );
    assert!(err.unwrap_err().to_string().contains("even"));
    let err = matmul_with(
        &x,
        6,
        Weights::F32(&w),
        3,
        4,
        None,
        Epilogue::Add(&[1.0; 17]),
    );
    assert!(err.unwrap_err().to_string().contains("residual"));
}

/// `linear_add` and `linear_glu` against `linear` and the separate pass, on every path: a prompt
/// (fused on AVX-512), a decode step (the GEMV, then the pass), bf16 weights, a strided input and
/// residual, and a residual of another dtype (the pass, which candle's add then checks).
#[test]
fn linear_add_and_glu_agree_with_linear_then_the_pass() {
    let mut rng = Rng::new(29);
    let (n, k) = (48, 40);
    let w = Tensor::from_vec(rng.vec(n * k, -1.0, 1.0), (n, k), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(rng.vec(n, -1.0, 1.0), n, &Device::Cpu).unwrap();
    let wb = w.to_dtype(DType::BF16).unwrap();
    for rows in [3, 37] {
        let x =
            Tensor::from_vec(rng.vec(2 * rows * k, -1.0, 1.0), (2, rows, k), &Device::Cpu).unwrap();
        let r =
            Tensor::from_vec(rng.vec(2 * rows * n, -1.0, 1.0), (2, rows, n), &Device::Cpu).unwrap();
        let strided_x =
            Tensor::from_vec(rng.vec(2 * k * rows, -1.0, 1.0), (2, k, rows), &Device::Cpu)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
        for (x, w) in [(&x, &w), (&x, &wb), (&strided_x, &w)] {
            let plain = linear(x, w, Some(&b)).unwrap();
            let same = |got: Tensor, want: Tensor| {
                assert_eq!(got.dims(), want.dims());
                let (g, w) = (
                    got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert_eq!(g, w, "rows {rows}");
            };
            same(
                linear_add(x, w, Some(&b), &r).unwrap(),
                add_tensors(&plain, &r).unwrap(),
            );
            let r_t = r
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            same(
                linear_add(x, w, Some(&b), &r_t).unwrap(),
                add_tensors(&plain, &r).unwrap(),
            );
            for act in [Glu::GeluTanh, Glu::Silu] {
                same(
                    linear_glu(x, w, Some(&b), act).unwrap(),
                    glu_halves(&plain, act).unwrap(),
                );
            }
        }
        // A residual that is not f32, or not of the product's shape (with as many values), goes
        // to the second pass, which refuses it.
        let r16 = r.to_dtype(DType::F16).unwrap();
        assert!(linear_add(&x, &w, Some(&b), &r16).is_err());
        let swapped = r.reshape((rows, 2, n)).unwrap();
        assert!(linear_add(&x, &w, Some(&b), &swapped).is_err());
    }
}

fn block_diagonal_naive(x: &[f32], rows: usize, width: usize, heads: usize, w: &[f32]) -> Vec<f32> {
    let block = width / heads;
    let mut y = vec![0.0f32; rows * width];
    for t in 0..rows {
        for h in 0..heads {
            for j in 0..block {
                y[t * width + h * block + j] = (0..block)
                    .map(|i| {
                        f64::from(x[t * width + h * block + i])
                            * f64::from(w[(h * block + i) * block + j])
                    })
                    .sum::<f64>() as f32;
            }
        }
    }
    y
}

/// Griffin's gate products against a plain loop: blocks under one panel (1, 5, 16), across panels
/// (33, 64) and across 256-step passes (260); one row (a decode step), rows across 12-row tiles;
/// threaded and not; and the errors for lengths and a `heads` that does not divide the width.
#[test]
fn block_diagonal_pair_matches_the_plain_loop() {
    if !kernels::cpu_gemm::available() {
        eprintln!("skipped: no AVX-512 (F, BW, VL) here, or FRUGAL_NO_AVX512 set; Griffin takes candle's batched matmul");
        return;
    }
    let mut rng = Rng::new(21);
    for (rows, heads, block) in [
        (1, 8, 64),
        (7, 3, 5),
        (30, 1, 1),
        (25, 4, 16),
        (13, 2, 33),
        (100, 8, 64),
        (5, 2, 260),
    ] {
        let width = heads * block;
        let x = rng.vec(rows * width, -1.0, 1.0);
        let w_x = rng.vec(heads * block * block, -1.0, 1.0);
        let w_a = rng.vec(heads * block * block, -1.0, 1.0);
        let (gate_x, gate_a) =
            kernels::cpu_gemm::block_diagonal_pair(&x, rows, width, heads, &w_x, &w_a).unwrap();
        let tol = 1e-5 + 2e-6 * block as f32;
        for (got, w) in [(&gate_x, &w_x), (&gate_a, &w_a)] {
            let want = block_diagonal_naive(&x, rows, width, heads, w);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "[{rows}, {heads}×{block}] [{i}]: {g} vs {w}"
                );
            }
        }
    }
    let x = vec![0.0; 2 * 12];
    let w = vec![0.0; 4 * 3 * 3];
    let e = kernels::cpu_gemm::block_diagonal_pair(&x, 2, 12, 5, &w, &w)
        .unwrap_err()
        .to_string();
    assert!(e.contains("heads") && e.contains("12"), "{e}");
    let e = kernels::cpu_gemm::block_diagonal_pair(&x, 2, 12, 4, &w[1..], &w)
        .unwrap_err()
        .to_string();
    assert!(e.contains("w_x") && e.contains("35"), "{e}");
}

/// The gates' tensor op on each of its paths (the AVX-512 pair for prefill rows, the batched
/// matmul for a decode step and for bf16) against per-head products in candle, and its error for
/// weights that do not fit the input's width.
#[test]
fn block_diagonal_gates_agree_with_per_head_matmuls_on_every_path() {
    let dev = Device::Cpu;
    let mut rng = Rng::new(23);
    let (heads, block) = (3, 20);
    let width = heads * block;
    let mut randn = |shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::from_vec(rng.vec(n, -1.0, 1.0), shape, &dev).unwrap()
    };
    let w_x = randn(&[heads, block, block]);
    let w_a = randn(&[heads, block, block]);
    for (b, t) in [(2, 9), (1, 1), (1, 40)] {
        let x = randn(&[b, t, width]);
        let want = |w: &Tensor| -> Vec<f32> {
            let parts: Vec<Tensor> = (0..heads)
                .map(|h| {
                    x.narrow(2, h * block, block)
                        .unwrap()
                        .reshape((b * t, block))
                        .unwrap()
                        .matmul(&w.get(h).unwrap())
                        .unwrap()
                })
                .collect();
            f32s(&Tensor::cat(&parts, 1).unwrap())
        };
        let (gx, ga) = kernels::rg_lru::block_diagonal_gates(&x, &w_x, &w_a).unwrap();
        assert_eq!(gx.dims(), [b, t, width]);
        close(&f32s(&gx), &want(&w_x));
        close(&f32s(&ga), &want(&w_a));
        // bf16 takes the batched matmul; its products equal the widened values' to bf16 rounding.
        let to = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let (gx16, _) =
            kernels::rg_lru::block_diagonal_gates(&to(&x), &to(&w_x), &to(&w_a)).unwrap();
        assert_eq!(gx16.dtype(), DType::BF16);
        let got = f32s(&gx16.to_dtype(DType::F32).unwrap());
        for (g, w) in got.iter().zip(want(&w_x)) {
            assert!((g - w).abs() <= 0.1 + 0.02 * w.abs(), "bf16: {g} vs {w}");
        }
    }
    let x = randn(&[1, 5, width + 1]);
    let e = kernels::rg_lru::block_diagonal_gates(&x, &w_x, &w_a)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("block_diagonal_gates") && e.contains("61"),
        "{e}"
    );
}
