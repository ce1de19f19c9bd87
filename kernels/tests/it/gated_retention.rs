//! Gated retention: the chunkwise CPU path and the CUDA kernel (emulated) against the recurrence,
//! on sequences not a multiple of the chunk, with and without an initial state; chunked calls
//! carrying the state equal one call.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::gated_retention::plan::plan;
use kernels::gated_retention::{
    gated_retention_cpu, gated_retention_reference, RetentionInput, RetentionOutput,
    RetentionShape, CHUNK,
};
use kernels::params::FrugalGatedRetentionParams;
use kernels::KernelError;
use proptest::prelude::*;

struct Case {
    shape: RetentionShape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    state: Option<Vec<f32>>,
}

impl Case {
    fn new(shape: RetentionShape, with_state: bool, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let rows = shape.batch * shape.seq_len * shape.heads;
        let scale = (shape.dk as f32).powf(-0.5);
        let mut vec = |n: usize, s: f32| {
            (0..n)
                .map(|_| rng.uniform(-1.0, 1.0) * s)
                .collect::<Vec<f32>>()
        };
        let q = vec(rows * shape.dk, 1.0);
        let k = vec(rows * shape.dk, scale);
        let v = vec(rows * shape.dv, 1.0);
        // YOCO's gates: logsigmoid(x)/16, decays between about 0.78 and 1.
        let g = vec(rows, 4.0)
            .into_iter()
            .map(|x| -(1.0 + (-x).exp()).ln() / 16.0)
            .collect();
        let state = with_state.then(|| vec(shape.state_len(), 1.0));
        Case {
            shape,
            q,
            k,
            v,
            g,
            state,
        }
    }

    fn input(&self) -> RetentionInput<'_> {
        RetentionInput {
            shape: self.shape,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            log_decay: &self.g,
            state: self.state.as_deref(),
        }
    }
}

fn shapes() -> Vec<(RetentionShape, bool)> {
    let s = |b, t, h, dk, dv| RetentionShape::new(b, t, h, dk, dv).unwrap();
    vec![
        (s(1, 1, 1, 1, 1), false),
        (s(1, 20, 4, 16, 16), false),
        (s(2, CHUNK + 1, 3, 8, 40), true),
        (s(1, 2 * CHUNK + 17, 2, 33, 7), true),
        (s(1, 200, 1, 64, 64), false),
        (s(2, 5, 2, 128, 33), true),
    ]
}

fn assert_close(what: &str, got: &RetentionOutput, want: &RetentionOutput, tol: f32) {
    for (name, g, w) in [("o", &got.o, &want.o), ("state", &got.state, &want.state)] {
        assert_eq!(g.len(), w.len(), "{what} {name}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what} {name}[{i}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn chunkwise_cpu_matches_the_recurrence() {
    for (i, (s, st)) in shapes().into_iter().enumerate() {
        let c = Case::new(s, st, i as u64);
        let want = gated_retention_reference(&c.input()).unwrap();
        assert_close(
            &s.to_string(),
            &gated_retention_cpu(&c.input()).unwrap(),
            &want,
            1e-4,
        );
    }
}

#[test]
fn hand_checked_two_steps() {
    // dk = dv = 1: S1 = k1 v1 = 2; S2 = 0.5·2 + 3·1 = 4; o = q·S = [2, 8].
    let s = RetentionShape::new(1, 2, 1, 1, 1).unwrap();
    let input = RetentionInput {
        shape: s,
        q: &[1.0, 2.0],
        k: &[1.0, 3.0],
        v: &[2.0, 1.0],
        log_decay: &[0.0, 0.5f32.ln()],
        state: None,
    };
    for out in [
        gated_retention_reference(&input).unwrap(),
        gated_retention_cpu(&input).unwrap(),
    ] {
        assert!(
            (out.o[0] - 2.0).abs() < 1e-6 && (out.o[1] - 8.0).abs() < 1e-6,
            "{:?}",
            out.o
        );
        assert!((out.state[0] - 4.0).abs() < 1e-6);
    }
}

#[test]
fn chunked_calls_carrying_the_state_equal_one_call() {
    let s = RetentionShape::new(1, 100, 2, 16, 16).unwrap();
    let c = Case::new(s, true, 7);
    let whole = gated_retention_cpu(&c.input()).unwrap();
    let (h, dk, dv) = (2, 16, 16);
    let mut state = c.state.clone().unwrap();
    let mut o = Vec::new();
    for (t0, len) in [(0, 37), (37, 1), (38, 62)] {
        let part = RetentionShape::new(1, len, h, dk, dv).unwrap();
        let out = gated_retention_cpu(&RetentionInput {
            shape: part,
            q: &c.q[t0 * h * dk..(t0 + len) * h * dk],
            k: &c.k[t0 * h * dk..(t0 + len) * h * dk],
            v: &c.v[t0 * h * dv..(t0 + len) * h * dv],
            log_decay: &c.g[t0 * h..(t0 + len) * h],
            state: Some(&state),
        })
        .unwrap();
        o.extend(out.o);
        state = out.state;
    }
    assert_close("chunked", &RetentionOutput { o, state }, &whole, 1e-5);
}

fn emulated(c: &Case) -> RetentionOutput {
    let s = c.shape;
    let l = plan(s).unwrap();
    let rows = s.batch * s.seq_len * s.heads;
    let mut o = vec![f32::NAN; rows * s.dv];
    let mut state = vec![f32::NAN; s.state_len()];
    let params = FrugalGatedRetentionParams {
        q: c.q.as_ptr(),
        k: c.k.as_ptr(),
        v: c.v.as_ptr(),
        log_decay: c.g.as_ptr(),
        state_in: c.state.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        o: o.as_mut_ptr(),
        state_out: state.as_mut_ptr(),
        batch: s.batch as i32,
        seq_len: s.seq_len as i32,
        heads: s.heads as i32,
        dk: s.dk as i32,
        dv: s.dv as i32,
    };
    // SAFETY: host buffers sized for the shape.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &params) }.unwrap();
    RetentionOutput { o, state }
}

#[test]
fn emulated_cuda_matches_the_recurrence() {
    for (i, (s, st)) in shapes().into_iter().enumerate() {
        let c = Case::new(s, st, 20 + i as u64);
        let want = gated_retention_reference(&c.input()).unwrap();
        assert_close(&format!("emulated {s}"), &emulated(&c), &want, 1e-4);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn chunkwise_and_emulated_match_on_random_shapes(
        batch in 1usize..3, t in 1usize..150, heads in 1usize..3, dk in 1usize..40,
        dv in 1usize..40, with_state in any::<bool>(), seed in 0u64..1000,
    ) {
        let c = Case::new(RetentionShape::new(batch, t, heads, dk, dv).unwrap(), with_state, seed);
        let want = gated_retention_reference(&c.input()).unwrap();
        assert_close("cpu", &gated_retention_cpu(&c.input()).unwrap(), &want, 1e-4);
        assert_close("emulated", &emulated(&c), &want, 1e-4);
    }
}

#[test]
fn bad_inputs_are_errors() {
    assert!(matches!(
        RetentionShape::new(1, 0, 1, 1, 1),
        Err(KernelError::Empty { .. })
    ));
    let c = Case::new(RetentionShape::new(1, 3, 1, 2, 2).unwrap(), false, 1);
    let mut input = c.input();
    input.log_decay = &c.g[..2];
    let e = gated_retention_cpu(&input).unwrap_err().to_string();
    assert!(e.contains("log_decay"), "{e}");
    let big = RetentionShape::new(1, 1, 1, 129, 1).unwrap();
    assert!(matches!(plan(big), Err(KernelError::TooLarge { .. })));
}
