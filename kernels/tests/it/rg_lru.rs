//! The fused RG-LRU fast path against its reference on random shapes, resets, padding, initial
//! states and GeLU branches; padding as the identity; chunked calls equal to one call; bad input.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::rg_lru::{rg_lru_cpu, rg_lru_reference, RgLruInput, RgLruOutput};
use proptest::prelude::*;

struct Case {
    batch: usize,
    seq_len: usize,
    width: usize,
    x: Vec<f32>,
    gx: Vec<f32>,
    ga: Vec<f32>,
    bx: Vec<f32>,
    ba: Vec<f32>,
    sp: Vec<f32>,
    h0: Option<Vec<f32>>,
    reset: Vec<bool>,
    real: Option<Vec<bool>>,
    branch: Option<Vec<f32>>,
}

impl Case {
    fn random(
        batch: usize,
        seq_len: usize,
        width: usize,
        seed: u64,
        opts: (bool, bool, bool),
    ) -> Self {
        let mut rng = Rng::new(seed);
        let n = batch * seq_len * width;
        let mut v = |len: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..len).map(|_| rng.uniform(lo, hi)).collect()
        };
        let (x, gx, ga) = (v(n, -2.0, 2.0), v(n, -4.0, 4.0), v(n, -4.0, 4.0));
        let (bx, ba, sp) = (
            v(width, -1.0, 1.0),
            v(width, -1.0, 1.0),
            v(width, 0.01, 3.0),
        );
        let h0 = opts.0.then(|| v(batch * width, -1.0, 1.0));
        let branch = opts.2.then(|| v(n, -5.0, 5.0));
        let mut rng = Rng::new(seed ^ 0xabc);
        // Resets at random positions (and always at 0 without h0); padding at random positions.
        let reset = (0..batch * seq_len)
            .map(|i| (i % seq_len == 0 && !opts.0) || rng.next_u64().is_multiple_of(9))
            .collect();
        let real = opts.1.then(|| {
            (0..batch * seq_len)
                .map(|_| !rng.next_u64().is_multiple_of(4))
                .collect()
        });
        Case {
            batch,
            seq_len,
            width,
            x,
            gx,
            ga,
            bx,
            ba,
            sp,
            h0,
            reset,
            real,
            branch,
        }
    }

    fn input(&self) -> RgLruInput<'_> {
        RgLruInput {
            batch: self.batch,
            seq_len: self.seq_len,
            width: self.width,
            x: &self.x,
            gate_x: &self.gx,
            gate_a: &self.ga,
            gate_x_bias: &self.bx,
            gate_a_bias: &self.ba,
            softplus_a: &self.sp,
            h0: self.h0.as_deref(),
            reset: &self.reset,
            real: self.real.as_deref(),
            branch: self.branch.as_deref(),
        }
    }
}

fn close(got: &RgLruOutput, want: &RgLruOutput) -> Result<(), String> {
    for (name, g, w) in [
        ("y", &got.y, &want.y),
        ("h_last", &got.h_last, &want.h_last),
    ] {
        if g.len() != w.len() {
            return Err(format!("{name}: {} vs {} elements", g.len(), w.len()));
        }
        for (i, (g, w)) in g.iter().zip(w.iter()).enumerate() {
            // NaN (an element never written) fails too.
            if g.is_nan() || (g - w).abs() > 2e-5 * (1.0 + w.abs()) {
                return Err(format!("{name}[{i}]: {g} vs {w}"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn fast_path_matches_reference(
        batch in 1usize..4, seq_len in 1usize..60, width in 1usize..200, seed in 0u64..10_000,
        h0 in any::<bool>(), padding in any::<bool>(), branch in any::<bool>(),
    ) {
        let case = Case::random(batch, seq_len, width, seed, (h0, padding, branch));
        let want = rg_lru_reference(&case.input()).unwrap();
        let got = rg_lru_cpu(&case.input()).unwrap();
        prop_assert!(close(&got, &want).is_ok(), "{:?}", close(&got, &want));
    }
}

#[test]
fn threaded_shapes_match_reference() {
    // Above the threading threshold, and widths that leave a partial channel block.
    for (b, t, w) in [(1, 400, 200), (2, 300, 130), (3, 350, 64)] {
        let case = Case::random(b, t, w, 7, (true, true, true));
        let want = rg_lru_reference(&case.input()).unwrap();
        close(&rg_lru_cpu(&case.input()).unwrap(), &want).unwrap();
    }
}

#[test]
fn the_recurrence_is_the_one_of_the_paper() {
    // One channel by hand: i = σ(0) = 0.5, r = σ(0) = 0.5, log a = −8·0.5·softplus(Λ) = −4·0.7,
    // so a = e^−2.8 and h_1 = a·h_0 + sqrt(1 − a²)·0.5·x_1; at a reset h = i·x.
    let (a, x0, x1) = ((-2.8f64).exp(), 0.6f32, -1.2f32);
    let input = RgLruInput {
        batch: 1,
        seq_len: 3,
        width: 1,
        x: &[x0, x1, 2.0],
        gate_x: &[0.0; 3],
        gate_a: &[0.0; 3],
        gate_x_bias: &[0.0],
        gate_a_bias: &[0.0],
        softplus_a: &[0.7],
        h0: Some(&[5.0]),
        reset: &[true, false, true],
        real: None,
        branch: None,
    };
    let h0 = 0.5 * x0 as f64; // the reset ignores h0
    let h1 = a * h0 + (1.0 - a * a).sqrt() * 0.5 * x1 as f64;
    let want = [h0, h1, 1.0];
    for f in [rg_lru_reference, rg_lru_cpu] {
        let out = f(&input).unwrap();
        for (g, w) in out.y.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert_eq!(out.h_last, vec![1.0]);
    }
}

#[test]
fn padding_is_the_identity_and_chunks_compose() {
    let case = Case::random(2, 40, 70, 3, (true, false, true));
    let whole = rg_lru_cpu(&case.input()).unwrap();
    // Padding at the end of the second call leaves the state as it was after the real tokens.
    let split = 17;
    let part = |lo: usize, hi: usize, h0: Option<&[f32]>| {
        let pick = |v: &[f32]| -> Vec<f32> {
            (0..2)
                .flat_map(|b| v[(b * 40 + lo) * 70..(b * 40 + hi) * 70].to_vec())
                .collect()
        };
        let reset: Vec<bool> = (0..2)
            .flat_map(|b| case.reset[b * 40 + lo..b * 40 + hi].to_vec())
            .collect();
        let (x, gx, ga, br) = (
            pick(&case.x),
            pick(&case.gx),
            pick(&case.ga),
            pick(case.branch.as_ref().unwrap()),
        );
        // Append three padded steps.
        let pad = |v: Vec<f32>| -> Vec<f32> {
            (0..2)
                .flat_map(|b| {
                    let mut row = v[b * (hi - lo) * 70..(b + 1) * (hi - lo) * 70].to_vec();
                    row.extend(std::iter::repeat_n(9.0, 3 * 70));
                    row
                })
                .collect()
        };
        let reset: Vec<bool> = (0..2)
            .flat_map(|b| {
                let mut r = reset[b * (hi - lo)..(b + 1) * (hi - lo)].to_vec();
                r.extend([false; 3]);
                r
            })
            .collect();
        let real: Vec<bool> = (0..2)
            .flat_map(|_| {
                let mut r = vec![true; hi - lo];
                r.extend([false; 3]);
                r
            })
            .collect();
        let (x, gx, ga, br) = (pad(x), pad(gx), pad(ga), pad(br));
        rg_lru_cpu(&RgLruInput {
            batch: 2,
            seq_len: hi - lo + 3,
            width: 70,
            x: &x,
            gate_x: &gx,
            gate_a: &ga,
            gate_x_bias: &case.bx,
            gate_a_bias: &case.ba,
            softplus_a: &case.sp,
            h0,
            reset: &reset,
            real: Some(&real),
            branch: Some(&br),
        })
        .unwrap()
    };
    let first = part(0, split, case.h0.as_deref());
    let second = part(split, 40, Some(&first.h_last));
    assert_eq!(second.h_last, whole.h_last);
    for b in 0..2 {
        for (t, out, lo, n) in [(0, &first, 0, split), (1, &second, split, 40 - split)] {
            let _ = t;
            let got = &out.y[b * (n + 3) * 70..(b * (n + 3) + n) * 70];
            let want = &whole.y[(b * 40 + lo) * 70..(b * 40 + lo + n) * 70];
            assert_eq!(got, want);
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let case = Case::random(1, 4, 8, 1, (false, false, false));
    let mut input = case.input();
    input.gate_a = &case.ga[..31];
    let e = rg_lru_cpu(&input).unwrap_err().to_string();
    assert!(
        e.contains("gate_a") && e.contains("31") && e.contains("32"),
        "{e}"
    );
    let mut input = case.input();
    input.reset = &case.reset[..3];
    assert!(rg_lru_reference(&input)
        .unwrap_err()
        .to_string()
        .contains("reset"));
    let mut input = case.input();
    input.width = 0;
    assert!(rg_lru_cpu(&input).is_err());
    // Sizes whose product overflows are an error, never a wrapped length check.
    for (batch, seq_len, width) in [
        (usize::MAX, 2, 1),
        (1 << 32, 1 << 32, 1),
        (1 << 21, 1 << 21, 1 << 21),
    ] {
        let mut input = case.input();
        (input.batch, input.seq_len, input.width) = (batch, seq_len, width);
        let e = rg_lru_cpu(&input).unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
        assert!(rg_lru_reference(&input).is_err());
    }
}

/// The CUDA form (`rg_lru_chunk_*` in kernels/cuda/linear_scan.cu) compiled for the host, run
/// through the launch plan the GPU uses.
fn emulated(case: &Case) -> RgLruOutput {
    use kernels::params::{FrugalLinearScanParams, FrugalRgLruParams};
    use kernels::rg_lru::plan::plan;
    use std::ffi::c_void;
    let shape = kernels::linear_scan::ScanShape::new(case.batch, case.seq_len, case.width).unwrap();
    let plan = plan(shape).unwrap();
    let n = case.batch * case.seq_len * case.width;
    let mut y = vec![f32::NAN; n];
    let mut h_last = vec![f32::NAN; case.batch * case.width];
    let mut chunk_a = vec![f32::NAN; plan.workspace_len.max(1)];
    let mut chunk_h = vec![f32::NAN; plan.workspace_len.max(1)];
    let flags = |f: &[bool]| f.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>();
    let reset = flags(&case.reset);
    let real = case.real.as_deref().map(flags);
    let params = FrugalRgLruParams {
        scan: FrugalLinearScanParams {
            a: std::ptr::null(),
            x: case.x.as_ptr() as *const c_void,
            h0: case.h0.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            reset: reset.as_ptr(),
            h: y.as_mut_ptr() as *mut c_void,
            h_last: h_last.as_mut_ptr(),
            chunk_a: chunk_a.as_mut_ptr(),
            chunk_h: chunk_h.as_mut_ptr(),
            batch: case.batch as i32,
            seq_len: case.seq_len as i32,
            channels: case.width as i32,
            num_chunks: plan.num_chunks as i32,
        },
        gate_x: case.gx.as_ptr(),
        gate_a: case.ga.as_ptr(),
        branch: case
            .branch
            .as_ref()
            .map_or(std::ptr::null(), |v| v.as_ptr()),
        gate_x_bias: case.bx.as_ptr(),
        gate_a_bias: case.ba.as_ptr(),
        softplus_a: case.sp.as_ptr(),
        real: real.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
    };
    for launch in &plan.launches {
        // SAFETY: every pointer is a live host buffer of the size the plan reads or writes; the
        // carry pass takes the scan's own parameters, as on the GPU.
        unsafe {
            if launch.kernel == "linear_scan_chunk_carry" {
                kernels_emu::launch(
                    launch.kernel,
                    launch.grid,
                    launch.block,
                    launch.shared_bytes,
                    &params.scan,
                )
            } else {
                kernels_emu::launch(
                    launch.kernel,
                    launch.grid,
                    launch.block,
                    launch.shared_bytes,
                    &params,
                )
            }
        }
        .unwrap();
    }
    RgLruOutput { y, h_last }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// One chunk and several (past 128 steps: summary, carry, apply), partial warps of channels,
    /// resets, padding, initial states and branches.
    #[test]
    fn cuda_form_on_the_emulator_matches_reference(
        batch in 1usize..3, seq_len in 1usize..300, width in 1usize..70, seed in 0u64..10_000,
        h0 in any::<bool>(), padding in any::<bool>(), branch in any::<bool>(),
    ) {
        let case = Case::random(batch, seq_len, width, seed, (h0, padding, branch));
        let want = rg_lru_reference(&case.input()).unwrap();
        let got = emulated(&case);
        prop_assert!(close(&got, &want).is_ok(), "{:?}", close(&got, &want));
    }
}
