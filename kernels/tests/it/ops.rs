//! Every kernel's candle op on the CPU against the kernel's plain reference: the op's checks, its
//! dtype conversions and its `cpu_fwd` (the fast path) together, on random odd shapes. The
//! tensor-op forms that GPUs run (`positional_attention_tensors`, `rg_lru_tensors`) are checked
//! here too, on the CPU, against the same references. Bad input is an error naming the kernel and
//! the argument.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use kernels::gated_retention::{
    gated_retention, gated_retention_reference, RetentionInput, RetentionShape,
};
use kernels::rg_lru::{rg_lru, rg_lru_reference, rg_lru_tensors, RgLruInput};
use kernels::rg_lru::{RgLruParams, RgLruSteps};
use kernels::sparse_attention::{
    sketch_topk, sketch_topk_reference, sparse_attention, sparse_attention_reference, Selection,
    SketchTopk, SparseInput, SparseShape,
};
use kernels::ternary_matmul::{
    ternary_matmul, ternary_matmul_reference, ternary_matmul_shared, PackedTernary, TernaryWeights,
};
use kernels::window_attention::{
    positional_attention, positional_attention_reference, positional_attention_tensors,
    window_attention, window_attention_reference, PositionalInput, WindowInput, WindowShape,
    WindowSpec,
};
use proptest::prelude::*;

use crate::common::Rng;

fn random(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(lo, hi)).collect()
}

fn tensor(v: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(v, dims, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

fn error_of<T: std::fmt::Debug>(r: candle_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Sliding-window and causal attention with grouped heads and offsets, through the op.
    #[test]
    fn window_attention_op_matches_reference(
        batch in 1usize..3, q_len in 1usize..9, extra in 0usize..7, kv_heads in 1usize..3,
        group in 1usize..3, head_dim in 1usize..19, window in prop::option::of(1usize..6),
        k_offset in 0usize..4, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let (heads, k_len) = (kv_heads * group, q_len + extra);
        let shape = WindowShape {
            batch, q_len, k_len, heads, kv_heads, head_dim,
            q_offset: k_offset + extra, k_offset, window,
        };
        let q = random(&mut rng, shape.q_elems(), -2.0, 2.0);
        let k = random(&mut rng, shape.kv_elems(), -2.0, 2.0);
        let v = random(&mut rng, shape.kv_elems(), -2.0, 2.0);
        let scale = (head_dim as f32).powf(-0.5);
        let want = window_attention_reference(&WindowInput { shape, q: &q, k: &k, v: &v, scale })
            .unwrap();
        let spec = WindowSpec { q_offset: shape.q_offset, k_offset, window, scale };
        let (qd, kd) = ([batch, q_len, heads, head_dim], [batch, k_len, kv_heads, head_dim]);
        let got = window_attention(&tensor(&q, &qd), &tensor(&k, &kd), &tensor(&v, &kd), &spec)
            .unwrap();
        prop_assert_eq!(got.dims(), &qd[..]);
        assert_close(&flat(&got), &want, 1e-5, "f32");
        // bf16 in, bf16 out; computed in f32 from the rounded inputs.
        let bf = |x: &[f32], d: &[usize]| tensor(x, d).to_dtype(DType::BF16).unwrap();
        let got = window_attention(&bf(&q, &qd), &bf(&k, &kd), &bf(&v, &kd), &spec).unwrap();
        prop_assert_eq!(got.dtype(), DType::BF16);
        assert_close(&flat(&got), &want, 0.05, "bf16");
        // f32 queries over a half-precision KV cache, read as it is: exactly the f32 op on the
        // same (rounded) values.
        for half in [DType::F16, DType::BF16] {
            let (kh, vh) = (tensor(&k, &kd).to_dtype(half).unwrap(), tensor(&v, &kd).to_dtype(half).unwrap());
            let got = window_attention(&tensor(&q, &qd), &kh, &vh, &spec).unwrap();
            let widened = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let want = window_attention(&tensor(&q, &qd), &widened(&kh), &widened(&vh), &spec).unwrap();
            prop_assert_eq!(got.dtype(), DType::F32);
            prop_assert_eq!(flat(&got), flat(&want));
        }
    }

    /// Ring-buffer positions (empty slots, padding queries) through the op and the tensor-op form.
    #[test]
    fn positional_attention_op_and_tensor_form_match_reference(
        batch in 1usize..3, q_len in 1usize..6, ring in 1usize..7, kv_heads in 1usize..3,
        group in 1usize..3, head_dim in 1usize..11, window in 1usize..6, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let (heads, k_len) = (kv_heads * group, ring + q_len);
        let start = (rng.next_u64() % 9) as i64;
        let mut q_pos = Vec::new();
        let mut k_pos = Vec::new();
        for _ in 0..batch {
            // A ring of earlier positions in scrambled slots, some empty; then the block's own.
            for s in 0..ring {
                let p = start - 1 - ((s * 5 + 3) % ring) as i64;
                k_pos.push(if rng.next_u64().is_multiple_of(4) { -1 } else { p });
            }
            for i in 0..q_len {
                let p = if rng.next_u64().is_multiple_of(5) { -1 } else { start + i as i64 };
                q_pos.push(p);
                k_pos.push(p);
            }
        }
        let q = random(&mut rng, batch * q_len * heads * head_dim, -2.0, 2.0);
        let k = random(&mut rng, batch * k_len * kv_heads * head_dim, -2.0, 2.0);
        let v = random(&mut rng, batch * k_len * kv_heads * head_dim, -2.0, 2.0);
        let scale = 0.4;
        let want = positional_attention_reference(&PositionalInput {
            batch, q_len, k_len, heads, kv_heads, head_dim, window,
            q: &q, k: &k, v: &v, q_pos: &q_pos, k_pos: &k_pos, scale,
        }).unwrap();
        let (qd, kd) = ([batch, q_len, heads, head_dim], [batch, k_len, kv_heads, head_dim]);
        let (qt, kt, vt) = (tensor(&q, &qd), tensor(&k, &kd), tensor(&v, &kd));
        let got = positional_attention(&qt, &kt, &vt, &q_pos, &k_pos, window, scale).unwrap();
        assert_close(&flat(&got), &want, 1e-5, "op");
        let got = positional_attention_tensors(&qt, &kt, &vt, &q_pos, &k_pos, window, scale)
            .unwrap();
        assert_close(&flat(&got), &want, 1e-5, "tensor form");
    }

    /// Chunkwise gated retention through the op, from zeros and from a carried state.
    #[test]
    fn gated_retention_op_matches_reference(
        batch in 1usize..3, seq_len in 1usize..70, heads in 1usize..3, dk in 1usize..9,
        dv in 1usize..9, with_state in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let shape = RetentionShape::new(batch, seq_len, heads, dk, dv).unwrap();
        let rows = batch * seq_len * heads;
        let q = random(&mut rng, rows * dk, -1.0, 1.0);
        let k = random(&mut rng, rows * dk, -1.0, 1.0);
        let v = random(&mut rng, rows * dv, -1.0, 1.0);
        let g = random(&mut rng, rows, -0.5, 0.0);
        let state = with_state.then(|| random(&mut rng, shape.state_len(), -1.0, 1.0));
        let want = gated_retention_reference(&RetentionInput {
            shape, q: &q, k: &k, v: &v, log_decay: &g, state: state.as_deref(),
        }).unwrap();
        let st = state.as_ref().map(|s| tensor(s, &[batch, heads, dk, dv]));
        let (o, new_state) = gated_retention(
            &tensor(&q, &[batch, seq_len, heads, dk]),
            &tensor(&k, &[batch, seq_len, heads, dk]),
            &tensor(&v, &[batch, seq_len, heads, dv]),
            &tensor(&g, &[batch, seq_len, heads]),
            st.as_ref(),
        ).unwrap();
        assert_close(&flat(&o), &want.o, 1e-4, "o");
        prop_assert_eq!(new_state.dims(), &[batch, heads, dk, dv][..]);
        assert_close(&flat(&new_state), &want.state, 1e-4, "state");
    }

    /// Selection (top-K and Gumbel-top-K, masked) and sparse attention over it, through the ops.
    #[test]
    fn sparse_ops_match_reference(
        batch in 1usize..3, seq_len in 1usize..12, heads in 1usize..3, head_dim in 1usize..9,
        keys in 1usize..6, gumbel in any::<bool>(), include_self in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let lp = random(&mut rng, batch * seq_len * seq_len, -5.0, 0.0);
        let mask: Vec<u8> = (0..batch * seq_len).map(|i| u8::from(i % 5 != 4)).collect();
        let sel = SketchTopk {
            batch, seq_len, heads, keys, log_probs: &lp, mask: Some(&mask),
            gumbel_seed: gumbel.then_some(seed), include_self,
        };
        let want_idx = sketch_topk_reference(&sel).unwrap();
        let mask_t = Tensor::from_slice(&mask, (batch, seq_len), &Device::Cpu).unwrap();
        let idx = sketch_topk(
            &tensor(&lp, &[batch, seq_len, seq_len]),
            Some(&mask_t),
            &Selection { heads, keys, gumbel_seed: sel.gumbel_seed, include_self },
        ).unwrap();
        prop_assert_eq!(idx.dims(), &[batch, heads, seq_len, keys][..]);
        prop_assert_eq!(idx.flatten_all().unwrap().to_vec1::<i32>().unwrap(), want_idx.clone());
        let shape = SparseShape::new(batch, seq_len, heads, head_dim, keys).unwrap();
        let q = random(&mut rng, shape.elems(), -2.0, 2.0);
        let k = random(&mut rng, shape.elems(), -2.0, 2.0);
        let v = random(&mut rng, shape.elems(), -2.0, 2.0);
        let want = sparse_attention_reference(&SparseInput {
            shape, q: &q, k: &k, v: &v, indices: &want_idx, scale: 0.3,
        }).unwrap();
        let d = [batch, seq_len, heads, head_dim];
        let got = sparse_attention(&tensor(&q, &d), &tensor(&k, &d), &tensor(&v, &d), &idx, 0.3)
            .unwrap();
        assert_close(&flat(&got), &want, 1e-5, "sparse attention");
    }

    /// Packed ternary weights times int8-quantised activations, alone and sharing one input.
    #[test]
    fn ternary_matmul_op_matches_reference(
        m in 1usize..6, n in 1usize..40, k in 1usize..300, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let t: Vec<i8> = (0..n * k).map(|_| (rng.next_u64() % 3) as i8 - 1).collect();
        let w = PackedTernary::from_ternary(&t, n, k, 0.37).unwrap();
        let x = random(&mut rng, m * k, -3.0, 3.0);
        let want = ternary_matmul_reference(&x, m, &w).unwrap();
        let placed = TernaryWeights::new(w, &Device::Cpu).unwrap();
        let got = ternary_matmul(&tensor(&x, &[1, m, k]), &placed).unwrap();
        prop_assert_eq!(got.dims(), &[1, m, n][..]);
        assert_close(&flat(&got), &want, 1e-6, "single");
        let shared = ternary_matmul_shared(&tensor(&x, &[m, k]), &[&placed, &placed]).unwrap();
        for y in &shared {
            assert_close(&flat(y), &want, 1e-6, "shared");
        }
    }

    /// The RG-LRU op (fused on the CPU in f32) and its tensor-op form against the reference.
    #[test]
    fn rg_lru_op_and_tensor_form_match_reference(
        batch in 1usize..3, seq_len in 1usize..9, width in 1usize..21, padded in any::<bool>(),
        with_branch in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let n = batch * seq_len * width;
        let (x, gx, ga) = (random(&mut rng, n, -2.0, 2.0), random(&mut rng, n, -4.0, 4.0),
            random(&mut rng, n, -4.0, 4.0));
        let (bx, ba, sp) = (random(&mut rng, width, -1.0, 1.0), random(&mut rng, width, -1.0, 1.0),
            random(&mut rng, width, 0.1, 2.0));
        let h0 = random(&mut rng, batch * width, -1.0, 1.0);
        let branch = with_branch.then(|| random(&mut rng, n, -3.0, 3.0));
        let reset: Vec<bool> = (0..batch * seq_len).map(|i| i % seq_len == 0 && i % 2 == 0).collect();
        let real: Option<Vec<bool>> =
            padded.then(|| (0..batch * seq_len).map(|i| i % 3 != 1).collect());
        let want = rg_lru_reference(&RgLruInput {
            batch, seq_len, width, x: &x, gate_x: &gx, gate_a: &ga, gate_x_bias: &bx,
            gate_a_bias: &ba, softplus_a: &sp, h0: Some(&h0), reset: &reset,
            real: real.as_deref(), branch: branch.as_deref(),
        }).unwrap();
        let d = [batch, seq_len, width];
        let flags = |f: &[bool]| {
            let v: Vec<u8> = f.iter().map(|&b| u8::from(b)).collect();
            Tensor::from_vec(v, (batch, seq_len), &Device::Cpu).unwrap()
        };
        let (bxt, bat, spt) = (tensor(&bx, &[width]), tensor(&ba, &[width]), tensor(&sp, &[width]));
        let params = RgLruParams { gate_x_bias: &bxt, gate_a_bias: &bat, softplus_a: &spt };
        let (reset_t, real_t) = (flags(&reset), real.as_deref().map(flags));
        let steps = RgLruSteps { reset: &reset_t, real: real_t.as_ref() };
        let br = branch.as_ref().map(|b| tensor(b, &d));
        let (xt, gxt, gat, h0t) =
            (tensor(&x, &d), tensor(&gx, &d), tensor(&ga, &d), tensor(&h0, &[batch, width]));
        let (y, h) = rg_lru(&xt, &gxt, &gat, br.as_ref(), &params, &h0t, &steps).unwrap();
        assert_close(&flat(&y), &want.y, 1e-5, "fused y");
        assert_close(&flat(&h), &want.h_last, 1e-5, "fused state");
        let (y, h) = rg_lru_tensors(&xt, &gxt, &gat, br.as_ref(), &params, &h0t, &steps).unwrap();
        assert_close(&flat(&y), &want.y, 1e-4, "tensor-form y");
        assert_close(&flat(&h), &want.h_last, 1e-4, "tensor-form state");
    }
}

/// Wrong dtypes, shapes and ranks are errors naming the kernel and the argument, before any work.
#[test]
fn ops_refuse_bad_input_by_name() {
    let dev = Device::Cpu;
    let q = Tensor::zeros((1, 3, 2, 4), DType::F32, &dev).unwrap();
    let spec = WindowSpec {
        q_offset: 0,
        k_offset: 0,
        window: None,
        scale: 1.0,
    };
    let e = error_of(window_attention(
        &q.to_dtype(DType::I64).unwrap(),
        &q,
        &q,
        &spec,
    ));
    assert!(
        e.contains("window_attention") && e.contains("`q`") && e.contains("i64"),
        "{e}"
    );
    let bad_k = Tensor::zeros((1, 3, 2, 5), DType::F32, &dev).unwrap();
    let e = error_of(window_attention(&q, &bad_k, &bad_k, &spec));
    assert!(e.contains("`k`") && e.contains("[1, 3, 2, 5]"), "{e}");
    let e = error_of(window_attention(
        &q,
        &q,
        &q.to_dtype(DType::BF16).unwrap(),
        &spec,
    ));
    assert!(e.contains("`v`") && e.contains("bf16"), "{e}");
    let e = error_of(window_attention(
        &q,
        &q.to_dtype(DType::F16).unwrap(),
        &q,
        &spec,
    ));
    assert!(
        e.contains("`v`") && e.contains("f16") && e.contains("f32"),
        "{e}"
    );
    let e = error_of(window_attention(
        &q,
        &q.to_dtype(DType::U8).unwrap(),
        &q.to_dtype(DType::U8).unwrap(),
        &spec,
    ));
    assert!(e.contains("`k`") && e.contains("u8"), "{e}");
    let late = WindowSpec {
        q_offset: 5,
        ..spec
    };
    let e = error_of(window_attention(&q, &q, &q, &late));
    assert!(e.contains("not all among the keys"), "{e}");

    let g = Tensor::zeros((1, 3, 2), DType::F32, &dev).unwrap();
    let e = error_of(gated_retention(
        &q,
        &q,
        &q,
        &g.narrow(2, 0, 1).unwrap(),
        None,
    ));
    assert!(
        e.contains("gated_retention") && e.contains("`log_decay`"),
        "{e}"
    );
    let st = Tensor::zeros((1, 2, 4, 4), DType::BF16, &dev).unwrap();
    let e = error_of(gated_retention(&q, &q, &q, &g, Some(&st)));
    assert!(e.contains("`state`") && e.contains("f32"), "{e}");

    let lp = Tensor::zeros((1, 3, 3), DType::F32, &dev).unwrap();
    let sel = Selection {
        heads: 2,
        keys: 2,
        gumbel_seed: None,
        include_self: false,
    };
    let e = error_of(sketch_topk(&lp, Some(&lp.narrow(2, 0, 1).unwrap()), &sel));
    assert!(
        e.contains("sparse_attention") && e.contains("`mask`"),
        "{e}"
    );
    let idx = Tensor::zeros((1, 2, 3, 2), DType::U32, &dev).unwrap();
    let e = error_of(sparse_attention(&q, &q, &q, &idx, 1.0));
    assert!(e.contains("`indices`") && e.contains("u32"), "{e}");

    let w = PackedTernary::from_ternary(&[1, 0, -1, 1], 2, 2, 1.0).unwrap();
    let w = TernaryWeights::new(w, &dev).unwrap();
    let e = error_of(ternary_matmul(&q, &w));
    assert!(
        e.contains("ternary_matmul") && e.contains("`x`") && e.contains("[..., 2]"),
        "{e}"
    );
    let empty = Tensor::zeros((0, 2), DType::F32, &dev).unwrap();
    assert!(ternary_matmul(&empty, &w).is_err(), "no tokens");
}
