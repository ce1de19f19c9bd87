//! Every candle op on a GPU (`cuda_fwd`, or the tensor-op form where a kernel has no CUDA path)
//! against the same op on the CPU, on the same random inputs: the `cuda` build only.
#![cfg(feature = "candle-cuda")]

use candle_core::{DType, Device, Tensor};
use kernels::gated_retention::gated_retention;
use kernels::linear_scan::linear_scan;
use kernels::rg_lru::{rg_lru, RgLruParams, RgLruSteps};
use kernels::sparse_attention::{sketch_topk, sparse_attention, Selection};
use kernels::ternary_matmul::{ternary_matmul, PackedTernary, TernaryWeights};
use kernels::window_attention::{positional_attention, window_attention, WindowSpec};

use crate::common::Rng;

fn gpu(test: &str) -> Option<Device> {
    kernels::gpu::test_context(test)?;
    Some(Device::new_cuda(0).unwrap())
}

fn rand(rng: &mut Rng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn close(gpu: &Tensor, cpu: &Tensor, tol: f32, what: &str) {
    assert_eq!(gpu.dims(), cpu.dims(), "{what}: shapes");
    let (g, c) = (flat(gpu), flat(cpu));
    let worst = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol,
        "{what}: GPU and CPU differ by {worst} (relative)"
    );
    println!("{what}: GPU = CPU within {worst:.1e}");
}

#[test]
fn window_attention_on_the_gpu_matches_the_cpu() {
    let Some(dev) = gpu("window_attention op") else {
        return;
    };
    let mut rng = Rng::new(7);
    for (b, t, extra, h, hk, d, window) in [
        (1, 1, 300, 8, 2, 64, None),
        (2, 37, 5, 4, 4, 128, Some(16)),
        (1, 130, 0, 6, 3, 80, None),
    ] {
        let q = rand(&mut rng, &[b, t, h, d], -2.0, 2.0);
        let k = rand(&mut rng, &[b, t + extra, hk, d], -2.0, 2.0);
        let v = rand(&mut rng, &[b, t + extra, hk, d], -2.0, 2.0);
        let spec = WindowSpec {
            q_offset: 3 + extra,
            k_offset: 3,
            window,
            scale: (d as f32).powf(-0.5),
        };
        let cpu = window_attention(&q, &k, &v, &spec).unwrap();
        let on = |x: &Tensor| x.to_device(&dev).unwrap();
        let g = window_attention(&on(&q), &on(&k), &on(&v), &spec).unwrap();
        close(
            &g,
            &cpu,
            1e-4,
            &format!("window_attention b{b} t{t}+{extra} h{h}/{hk} d{d}"),
        );
        let g16 = window_attention(
            &on(&q).to_dtype(DType::BF16).unwrap(),
            &on(&k).to_dtype(DType::BF16).unwrap(),
            &on(&v).to_dtype(DType::BF16).unwrap(),
            &spec,
        )
        .unwrap();
        assert_eq!(g16.dtype(), DType::BF16);
        close(&g16, &cpu, 0.05, "window_attention bf16");
    }
}

#[test]
fn positional_attention_on_the_gpu_matches_the_cpu() {
    let Some(dev) = gpu("positional_attention op") else {
        return;
    };
    let mut rng = Rng::new(8);
    let (b, t, ring, h, hk, d, window) = (2, 5, 8, 4, 1, 32, 6);
    let q = rand(&mut rng, &[b, t, h, d], -2.0, 2.0);
    let k = rand(&mut rng, &[b, ring + t, hk, d], -2.0, 2.0);
    let v = rand(&mut rng, &[b, ring + t, hk, d], -2.0, 2.0);
    let mut q_pos = Vec::new();
    let mut k_pos = Vec::new();
    for bi in 0..b {
        k_pos.extend((0..ring as i64).map(|s| if s == 3 { -1 } else { 10 + (s * 3) % 8 }));
        for i in 0..t as i64 {
            let p = if bi == 1 && i == 0 { -1 } else { 18 + i };
            q_pos.push(p);
            k_pos.push(p);
        }
    }
    let cpu = positional_attention(&q, &k, &v, &q_pos, &k_pos, window, 0.2).unwrap();
    let on = |x: &Tensor| x.to_device(&dev).unwrap();
    let g = positional_attention(&on(&q), &on(&k), &on(&v), &q_pos, &k_pos, window, 0.2).unwrap();
    close(&g, &cpu, 1e-4, "positional_attention");
}

#[test]
fn gated_retention_on_the_gpu_matches_the_cpu() {
    let Some(dev) = gpu("gated_retention op") else {
        return;
    };
    let mut rng = Rng::new(9);
    for (b, t, h, dk, dv) in [(1, 1, 4, 64, 64), (2, 100, 3, 32, 48)] {
        let q = rand(&mut rng, &[b, t, h, dk], -1.0, 1.0);
        let k = rand(&mut rng, &[b, t, h, dk], -1.0, 1.0);
        let v = rand(&mut rng, &[b, t, h, dv], -1.0, 1.0);
        let g = rand(&mut rng, &[b, t, h], -0.3, 0.0);
        let s0 = rand(&mut rng, &[b, h, dk, dv], -1.0, 1.0);
        let (o, s) = gated_retention(&q, &k, &v, &g, Some(&s0)).unwrap();
        let on = |x: &Tensor| x.to_device(&dev).unwrap();
        let (go, gs) = gated_retention(&on(&q), &on(&k), &on(&v), &on(&g), Some(&on(&s0))).unwrap();
        close(&go, &o, 1e-4, &format!("gated_retention o, t{t}"));
        close(&gs, &s, 1e-4, &format!("gated_retention state, t{t}"));
    }
}

#[test]
fn selection_and_sparse_attention_on_the_gpu_match_the_cpu() {
    let Some(dev) = gpu("sparse_attention ops") else {
        return;
    };
    let mut rng = Rng::new(10);
    let (b, n, h, d, keys) = (2, 96, 4, 32, 16);
    let lp = rand(&mut rng, &[b, n, n], -6.0, 0.0);
    let mask: Vec<u8> = (0..b * n).map(|i| u8::from(i % 11 != 10)).collect();
    let mask = Tensor::from_vec(mask, (b, n), &Device::Cpu).unwrap();
    let on = |x: &Tensor| x.to_device(&dev).unwrap();
    for gumbel_seed in [None, Some(5)] {
        let sel = Selection {
            heads: h,
            keys,
            gumbel_seed,
            include_self: true,
        };
        let idx = sketch_topk(&lp, Some(&mask), &sel).unwrap();
        let gidx = sketch_topk(&on(&lp), Some(&on(&mask)), &sel).unwrap();
        let (a, c): (Vec<i32>, Vec<i32>) = (
            gidx.to_device(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap(),
            idx.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a, c, "the same keys selected (gumbel {gumbel_seed:?})");
        let q = rand(&mut rng, &[b, n, h, d], -2.0, 2.0);
        let k = rand(&mut rng, &[b, n, h, d], -2.0, 2.0);
        let v = rand(&mut rng, &[b, n, h, d], -2.0, 2.0);
        let cpu = sparse_attention(&q, &k, &v, &idx, 0.18).unwrap();
        let g = sparse_attention(&on(&q), &on(&k), &on(&v), &gidx, 0.18).unwrap();
        close(&g, &cpu, 1e-4, "sparse_attention");
    }
}

#[test]
fn ternary_matmul_on_the_gpu_matches_the_cpu() {
    let Some(dev) = gpu("ternary_matmul op") else {
        return;
    };
    let mut rng = Rng::new(11);
    for (m, n, k) in [(1, 2560, 6912), (5, 300, 130), (64, 512, 2560)] {
        let t: Vec<i8> = (0..n * k).map(|_| (rng.next_u64() % 3) as i8 - 1).collect();
        let w = PackedTernary::from_ternary(&t, n, k, 0.41).unwrap();
        let x = rand(&mut rng, &[m, k], -3.0, 3.0);
        let cpu =
            ternary_matmul(&x, &TernaryWeights::new(w.clone(), &Device::Cpu).unwrap()).unwrap();
        let on_gpu = TernaryWeights::new(w, &dev).unwrap();
        let g = ternary_matmul(&x.to_device(&dev).unwrap(), &on_gpu).unwrap();
        close(&g, &cpu, 1e-5, &format!("ternary_matmul {m}x{k} by {n}"));
    }
}

#[test]
fn scan_and_rg_lru_on_the_gpu_match_the_cpu() {
    let Some(dev) = gpu("linear_scan and rg_lru ops") else {
        return;
    };
    let mut rng = Rng::new(12);
    let (b, t, w) = (2, 300, 256);
    let on = |x: &Tensor| x.to_device(&dev).unwrap();
    let a = rand(&mut rng, &[b, t, w], 0.0, 0.999);
    let x = rand(&mut rng, &[b, t, w], -1.0, 1.0);
    let h0 = rand(&mut rng, &[b, w], -1.0, 1.0);
    let (h, last) = linear_scan(&a, &x, Some(&h0), None).unwrap();
    let (gh, glast) = linear_scan(&on(&a), &on(&x), Some(&on(&h0)), None).unwrap();
    close(&gh, &h, 1e-4, "linear_scan h");
    close(&glast, &last, 1e-4, "linear_scan state");

    let (gx, ga, br) = (
        rand(&mut rng, &[b, t, w], -4.0, 4.0),
        rand(&mut rng, &[b, t, w], -4.0, 4.0),
        rand(&mut rng, &[b, t, w], -3.0, 3.0),
    );
    let (bx, ba, sp) = (
        rand(&mut rng, &[w], -1.0, 1.0),
        rand(&mut rng, &[w], -1.0, 1.0),
        rand(&mut rng, &[w], 0.1, 2.0),
    );
    let reset: Vec<u8> = (0..b * t).map(|i| u8::from(i % t == 0)).collect();
    let reset = Tensor::from_vec(reset, (b, t), &Device::Cpu).unwrap();
    let params = RgLruParams {
        gate_x_bias: &bx,
        gate_a_bias: &ba,
        softplus_a: &sp,
    };
    let steps = RgLruSteps {
        reset: &reset,
        real: None,
    };
    let (y, hl) = rg_lru(&x, &gx, &ga, Some(&br), &params, &h0, &steps).unwrap();
    let (gbx, gba, gsp, greset) = (on(&bx), on(&ba), on(&sp), on(&reset));
    let (gy, ghl) = rg_lru(
        &on(&x),
        &on(&gx),
        &on(&ga),
        Some(&on(&br)),
        &RgLruParams {
            gate_x_bias: &gbx,
            gate_a_bias: &gba,
            softplus_a: &gsp,
        },
        &on(&h0),
        &RgLruSteps {
            reset: &greset,
            real: None,
        },
    )
    .unwrap();
    close(&gy, &y, 1e-4, "rg_lru y");
    close(&ghl, &hl, 1e-4, "rg_lru state");
}
