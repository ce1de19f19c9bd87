//! Additive attention: the fast CPU path and the CUDA kernel (emulated) against the reference.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::common::Rng;
use kernels::additive_attention::plan::plan;
use kernels::additive_attention::{
    additive_attention_cpu, additive_attention_reference, AdditiveInput, AdditiveOutput,
    AdditiveShape, ScoreForm,
};
use kernels::params::FrugalAdditiveAttentionParams;
use proptest::prelude::*;

struct Case {
    shape: AdditiveShape,
    form: ScoreForm,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Option<Vec<f32>>,
    wq: Vec<f32>,
    bq: Option<Vec<f32>>,
    wk: Vec<f32>,
    bk: Option<Vec<f32>>,
}

impl Case {
    fn random(shape: AdditiveShape, form: ScoreForm, padded: bool, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut vec =
            |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.uniform(-s, s)).collect() };
        let width = match form {
            ScoreForm::Full => shape.hidden(),
            ScoreForm::PerHead => shape.head_dim,
        };
        let (q, k, v) = (
            vec(shape.len(), 1.0),
            vec(shape.len(), 1.0),
            vec(shape.len(), 1.0),
        );
        let (wq, wk) = (vec(shape.heads * width, 1.0), vec(shape.heads * width, 1.0));
        let (bq, bk) = (Some(vec(shape.heads, 0.5)), Some(vec(shape.heads, 0.5)));
        // Padding at the end of every other sequence (never all of it).
        let mask = padded.then(|| {
            (0..shape.batch * shape.seq_len)
                .map(|i| {
                    let (b, t) = (i / shape.seq_len, i % shape.seq_len);
                    if b % 2 == 1 && t >= shape.seq_len.div_ceil(2) {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect()
        });
        Case {
            shape,
            form,
            q,
            k,
            v,
            mask,
            wq,
            bq,
            wk,
            bk,
        }
    }

    fn input(&self) -> AdditiveInput<'_> {
        AdditiveInput {
            shape: self.shape,
            form: self.form,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            mask: self.mask.as_deref(),
            wq: &self.wq,
            bq: self.bq.as_deref(),
            wk: &self.wk,
            bk: self.bk.as_deref(),
        }
    }
}

fn emulated(case: &Case) -> AdditiveOutput {
    let s = case.shape;
    let plan = plan(s).unwrap();
    let mut u = vec![f32::NAN; s.len()];
    let mut pooled_q = vec![f32::NAN; s.batch * s.hidden()];
    let mut pooled_k = vec![f32::NAN; s.batch * s.hidden()];
    let mut scores = vec![f32::NAN; plan.workspace_len];
    let opt = |x: &Option<Vec<f32>>| x.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let params = FrugalAdditiveAttentionParams {
        q: case.q.as_ptr(),
        k: case.k.as_ptr(),
        v: case.v.as_ptr(),
        mask: opt(&case.mask),
        wq: case.wq.as_ptr(),
        bq: opt(&case.bq),
        wk: case.wk.as_ptr(),
        bk: opt(&case.bk),
        u: u.as_mut_ptr(),
        pooled_q: pooled_q.as_mut_ptr(),
        pooled_k: pooled_k.as_mut_ptr(),
        scores: scores.as_mut_ptr(),
        batch: s.batch as i32,
        seq_len: s.seq_len as i32,
        heads: s.heads as i32,
        head_dim: s.head_dim as i32,
        full_scores: i32::from(case.form == ScoreForm::Full),
    };
    let l = &plan.launch;
    // SAFETY: every pointer is a live host buffer sized as the plan expects.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &params) }.unwrap();
    AdditiveOutput {
        u,
        pooled_q,
        pooled_k,
    }
}

fn assert_close(what: &str, got: &AdditiveOutput, want: &AdditiveOutput) {
    for (name, g, w) in [
        ("u", &got.u, &want.u),
        ("pooled_q", &got.pooled_q, &want.pooled_q),
        ("pooled_k", &got.pooled_k, &want.pooled_k),
    ] {
        assert_eq!(g.len(), w.len(), "{what}: {name} length");
        for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                "{what}: {name}[{i}] = {a}, reference {b}"
            );
        }
    }
}

fn shapes() -> Vec<AdditiveShape> {
    // One head, odd head sizes, T below, at and past a warp and the block size, a batch of 3.
    [
        (1, 1, 1, 1),
        (2, 7, 3, 5),
        (3, 33, 4, 16),
        (1, 257, 2, 33),
        (2, 1000, 4, 8),
    ]
    .iter()
    .map(|&(b, t, h, d)| AdditiveShape::new(b, t, h, d).unwrap())
    .collect()
}

#[test]
fn reference_matches_a_hand_computed_case() {
    // One sequence of two tokens, one head of dim 1, full scores w = 1, no bias:
    // α = softmax([q0, q1]) with q = [0, ln 3] -> [1/4, 3/4]; q̄ = 3/4 · ln 3.
    let ln3 = 3.0f32.ln();
    let shape = AdditiveShape::new(1, 2, 1, 1).unwrap();
    let input = AdditiveInput {
        shape,
        form: ScoreForm::Full,
        q: &[0.0, ln3],
        k: &[1.0, 1.0],
        v: &[2.0, 4.0],
        mask: None,
        wq: &[1.0],
        bq: None,
        wk: &[1.0],
        bk: None,
    };
    let out = additive_attention_reference(&input).unwrap();
    let gq = 0.75 * ln3;
    // p = k ⊙ q̄ = [gq, gq]: equal scores, β = [1/2, 1/2]; k̄ = gq; u = gq · v.
    assert!((out.pooled_q[0] - gq).abs() < 1e-6);
    assert!((out.pooled_k[0] - gq).abs() < 1e-6);
    assert!((out.u[0] - 2.0 * gq).abs() < 1e-6 && (out.u[1] - 4.0 * gq).abs() < 1e-6);
}

#[test]
fn fast_path_and_emulated_cuda_match_reference() {
    for (i, shape) in shapes().into_iter().enumerate() {
        for form in [ScoreForm::Full, ScoreForm::PerHead] {
            for padded in [false, true] {
                let case = Case::random(shape, form, padded, 7 + i as u64);
                let want = additive_attention_reference(&case.input()).unwrap();
                let what = format!("{shape} {form:?} padded={padded}");
                assert_close(
                    &format!("cpu {what}"),
                    &additive_attention_cpu(&case.input()).unwrap(),
                    &want,
                );
                assert_close(&format!("emulated cuda {what}"), &emulated(&case), &want);
            }
        }
    }
}

#[test]
fn padding_is_ignored() {
    // A padded sequence equals the same sequence cut to its tokens.
    let shape = AdditiveShape::new(2, 10, 2, 4).unwrap();
    let case = Case::random(shape, ScoreForm::Full, true, 3);
    let full = additive_attention_cpu(&case.input()).unwrap();
    let h = shape.hidden();
    let cut = |v: &[f32]| v[10 * h..15 * h].to_vec();
    let short = AdditiveShape::new(1, 5, 2, 4).unwrap();
    let (q, k, v) = (cut(&case.q), cut(&case.k), cut(&case.v));
    let alone = additive_attention_cpu(&AdditiveInput {
        shape: short,
        mask: None,
        q: &q,
        k: &k,
        v: &v,
        ..case.input()
    })
    .unwrap();
    for (a, b) in alone.pooled_k.iter().zip(&full.pooled_k[h..]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let shape = AdditiveShape::new(1, 3, 2, 2).unwrap();
    let case = Case::random(shape, ScoreForm::PerHead, false, 1);
    let short = vec![0.0f32; 3];
    let err = additive_attention_cpu(&AdditiveInput {
        wq: &short,
        ..case.input()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("`wq` has 3 elements, expected 4"),
        "{err}"
    );
    assert!(AdditiveShape::new(1, 0, 2, 2).is_err());
    let wide = AdditiveShape::new(1, 4, 64, 128).unwrap();
    assert!(plan(wide)
        .unwrap_err()
        .to_string()
        .contains("shared memory"));
}

#[test]
fn candle_op_matches_reference() {
    use candle_core::{Device, Tensor};
    use kernels::additive_attention::op::{additive_attention, AdditiveWeights};
    let shape = AdditiveShape::new(2, 9, 3, 4).unwrap();
    let case = Case::random(shape, ScoreForm::Full, true, 11);
    let dev = Device::Cpu;
    let t = |v: &[f32], dims: &[usize]| Tensor::from_slice(v, dims, &dev).unwrap();
    let dims = [2, 9, 12];
    let (wq, wk) = (t(&case.wq, &[3, 12]), t(&case.wk, &[3, 12]));
    let (bq, bk) = (
        t(case.bq.as_ref().unwrap(), &[3]),
        t(case.bk.as_ref().unwrap(), &[3]),
    );
    let mask = t(case.mask.as_ref().unwrap(), &[2, 9]);
    let w = AdditiveWeights {
        form: ScoreForm::Full,
        heads: 3,
        wq: &wq,
        bq: Some(&bq),
        wk: &wk,
        bk: Some(&bk),
        mask: Some(&mask),
    };
    let u = additive_attention(
        &t(&case.q, &dims),
        &t(&case.k, &dims),
        &t(&case.v, &dims),
        &w,
    )
    .unwrap();
    let want = additive_attention_reference(&case.input()).unwrap();
    let got: Vec<f32> = u.flatten_all().unwrap().to_vec1().unwrap();
    for (a, b) in got.iter().zip(&want.u) {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{a} vs {b}");
    }
    let err = additive_attention(
        &t(&case.q, &dims),
        &t(&case.k, &dims),
        &t(&case.v[..9 * 12], &[1, 9, 12]),
        &w,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`v` has shape [1, 9, 12]"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn emulated_cuda_matches_reference_on_random_shapes(
        batch in 1usize..3, seq_len in 1usize..300, heads in 1usize..5, head_dim in 1usize..20,
        per_head: bool, padded: bool, seed: u64,
    ) {
        let shape = AdditiveShape::new(batch, seq_len, heads, head_dim).unwrap();
        let form = if per_head { ScoreForm::PerHead } else { ScoreForm::Full };
        let case = Case::random(shape, form, padded, seed);
        let want = additive_attention_reference(&case.input()).unwrap();
        assert_close("cpu", &additive_attention_cpu(&case.input()).unwrap(), &want);
        assert_close("emulated", &emulated(&case), &want);
    }
}
