//! Smart Bird's kernels: the selection (reference, fast CPU, emulated CUDA) and the sparse
//! attention (same three), on odd shapes, with padding, empty slots, both modes.
#![allow(clippy::unwrap_used)]

use crate::common::Rng;
use kernels::params::{FrugalSketchTopkParams, FrugalSparseAttentionParams};
use kernels::sparse_attention::plan::{attention_plan, topk_plan};
use kernels::sparse_attention::{
    gumbel, sketch_topk_cpu, sketch_topk_reference, sparse_attention_cpu,
    sparse_attention_reference, SketchTopk, SparseInput, SparseShape,
};
use kernels::KernelError;
use proptest::prelude::*;

/// Row-wise log-softmax of random logits: a sketch's log-probabilities.
fn log_probs(batch: usize, n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut lp = Vec::with_capacity(batch * n * n);
    for _ in 0..batch * n {
        let row: Vec<f32> = (0..n).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        lp.extend(row.iter().map(|x| x - lse));
    }
    lp
}

fn padding_mask(batch: usize, n: usize) -> Vec<u8> {
    // Sequence b has n - 2b tokens (at least 1), then padding.
    (0..batch * n)
        .map(|x| u8::from(x % n < n.saturating_sub(2 * (x / n)).max(1)))
        .collect()
}

fn emulated_topk(sel: &SketchTopk<'_>) -> Vec<i32> {
    let shape = sel.shape().unwrap();
    let l = topk_plan(shape).unwrap();
    let mut out = vec![i32::MIN; shape.index_len()];
    let params = FrugalSketchTopkParams {
        log_probs: sel.log_probs.as_ptr(),
        mask: sel.mask.map_or(std::ptr::null(), |m| m.as_ptr()),
        indices: out.as_mut_ptr(),
        seed: sel.gumbel_seed.unwrap_or(0),
        batch: sel.batch as i32,
        seq_len: sel.seq_len as i32,
        heads: sel.heads as i32,
        keys: sel.keys as i32,
        gumbel: i32::from(sel.gumbel_seed.is_some()),
        include_self: i32::from(sel.include_self),
    };
    // SAFETY: host buffers sized for the shape.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &params) }.unwrap();
    out
}

fn emulated_attention(input: &SparseInput<'_>) -> Vec<f32> {
    let s = input.shape;
    let l = attention_plan(s).unwrap();
    let mut o = vec![f32::NAN; s.elems()];
    let params = FrugalSparseAttentionParams {
        q: input.q.as_ptr(),
        k: input.k.as_ptr(),
        v: input.v.as_ptr(),
        indices: input.indices.as_ptr(),
        o: o.as_mut_ptr(),
        scale: input.scale,
        batch: s.batch as i32,
        seq_len: s.seq_len as i32,
        heads: s.heads as i32,
        head_dim: s.head_dim as i32,
        keys: s.keys as i32,
    };
    // SAFETY: host buffers sized for the shape.
    unsafe { kernels_emu::launch(l.kernel, l.grid, l.block, l.shared_bytes, &params) }.unwrap();
    o
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn selection_forms_agree_in_both_modes() {
    for (case, &(batch, n, heads, keys)) in [
        (1, 1, 1, 1),
        (2, 9, 3, 4),
        (3, 40, 2, 7),
        (1, 100, 1, 13),
        (2, 5, 2, 9),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(case as u64);
        let lp = log_probs(batch, n, &mut rng);
        let mask = padding_mask(batch, n);
        for (seed, include_self, masked) in [
            (None, false, false),
            (Some(7), true, true),
            (Some(8), false, true),
        ] {
            let sel = SketchTopk {
                batch,
                seq_len: n,
                heads,
                keys,
                log_probs: &lp,
                mask: masked.then_some(&mask[..]),
                gumbel_seed: seed,
                include_self,
            };
            let want = sketch_topk_reference(&sel).unwrap();
            assert_eq!(sketch_topk_cpu(&sel).unwrap(), want, "cpu, case {case}");
            assert_eq!(emulated_topk(&sel), want, "emulated, case {case}");
        }
    }
}

/// The fast Gumbel-top-K bounds each key's noise from a table and scores exactly only the keys
/// that can be among the K best: its picks must be the reference's exactly, also where scores
/// differ by the noise alone (a flat sketch), with ties in the sketch, keys of probability zero
/// (`-inf`), and K from 1 to most of the row.
#[test]
fn bounded_gumbel_selection_is_the_references_exactly() {
    let (batch, n, heads) = (2, 300, 2);
    let mut rng = Rng::new(99);
    let sketches: [(&str, Vec<f32>); 3] = [
        ("flat", vec![-(n as f32).ln(); batch * n * n]),
        (
            "ties and zeros",
            (0..batch * n * n)
                .map(|e| match e % 7 {
                    0 => f32::NEG_INFINITY,
                    1 | 2 => -3.0,
                    _ => -(((e * 31) % 11) as f32) * 0.25 - 4.0,
                })
                .collect(),
        ),
        ("random", log_probs(batch, n, &mut rng)),
    ];
    let mask = padding_mask(batch, n);
    for (what, lp) in &sketches {
        for keys in [1, 5, 64, 250] {
            for (include_self, masked) in [(false, false), (true, true)] {
                let sel = SketchTopk {
                    batch,
                    seq_len: n,
                    heads,
                    keys,
                    log_probs: lp,
                    mask: masked.then_some(&mask[..]),
                    gumbel_seed: Some(keys as u64),
                    include_self,
                };
                assert_eq!(
                    sketch_topk_cpu(&sel).unwrap(),
                    sketch_topk_reference(&sel).unwrap(),
                    "{what}, K {keys}, self {include_self}, masked {masked}"
                );
            }
        }
    }
}

#[test]
fn selection_respects_padding_self_and_heads() {
    let (batch, n, heads, keys) = (2, 12, 4, 5);
    let mut rng = Rng::new(3);
    let lp = log_probs(batch, n, &mut rng);
    let mask = padding_mask(batch, n); // sequence 1 has 10 tokens
    let sel = SketchTopk {
        batch,
        seq_len: n,
        heads,
        keys,
        log_probs: &lp,
        mask: Some(&mask),
        gumbel_seed: Some(42),
        include_self: true,
    };
    let idx = sketch_topk_cpu(&sel).unwrap();
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..n {
                let row = &idx[((b * heads + h) * n + i) * keys..][..keys];
                assert!(
                    row.iter().all(|&j| j >= 0 && mask[b * n + j as usize] == 1),
                    "padding selected: {row:?}"
                );
                if mask[b * n + i] == 1 {
                    assert_eq!(row[0], i as i32, "own position first");
                }
                let mut sorted = row.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), keys, "without replacement: {row:?}");
            }
        }
    }
    // Heads draw different sets; the same seed the same, another seed others.
    let per_head = |idx: &[i32], h: usize| idx[h * n * keys..(h + 1) * n * keys].to_vec();
    assert_ne!(per_head(&idx, 0), per_head(&idx, 1));
    assert_eq!(sketch_topk_cpu(&sel).unwrap(), idx);
    let other = SketchTopk {
        gumbel_seed: Some(43),
        ..sel
    };
    assert_ne!(sketch_topk_cpu(&other).unwrap(), idx);
    // Deterministic top-K: every head the same.
    let det = SketchTopk {
        gumbel_seed: None,
        ..sel
    };
    let d = sketch_topk_cpu(&det).unwrap();
    assert_eq!(per_head(&d, 0), per_head(&d, 3));
    // More keys than tokens: -1 fills the rest.
    let few = SketchTopk { keys: 11, ..det };
    let idx = sketch_topk_cpu(&few).unwrap();
    // Batch 1, head 0, query 3.
    let last_row_b1 = &idx[(heads * n + 3) * 11..][..11];
    assert_eq!(last_row_b1[10], -1, "{last_row_b1:?}");
    assert!(last_row_b1[..10].iter().all(|&j| j >= 0));
}

#[test]
fn gumbel_top_one_samples_the_sketch_probabilities() {
    // One query over 6 keys with known probabilities; K = 1 under Gumbel noise draws key j with
    // probability p_j. 24 000 draws (heads x seeds): each frequency within 0.015 of p (its
    // standard error is at most 0.0033, so this is a 4.5-sigma band).
    let p = [0.4f32, 0.25, 0.15, 0.1, 0.07, 0.03];
    let lp: Vec<f32> = p.iter().map(|x| x.ln()).collect();
    // A 6x6 sketch whose every row is p.
    let rows: Vec<f32> = (0..6).flat_map(|_| lp.clone()).collect();
    let (heads, seeds) = (400, 60);
    let mut counts = [0usize; 6];
    for seed in 0..seeds {
        let sel = SketchTopk {
            batch: 1,
            seq_len: 6,
            heads,
            keys: 1,
            log_probs: &rows,
            mask: None,
            gumbel_seed: Some(seed),
            include_self: false,
        };
        let idx = sketch_topk_cpu(&sel).unwrap();
        for h in 0..heads {
            counts[idx[h * 6] as usize] += 1; // query 0 of each head
        }
    }
    let total = (heads * seeds as usize) as f32;
    for (j, (&c, &pj)) in counts.iter().zip(&p).enumerate() {
        let f = c as f32 / total;
        assert!(
            (f - pj).abs() < 0.015,
            "key {j}: frequency {f} vs probability {pj}"
        );
    }
    // The noise itself: mean of Gumbel(0, 1) is the Euler–Mascheroni constant 0.5772.
    let mean = (0..100_000u64)
        .map(|c| f64::from(gumbel(1, c)))
        .sum::<f64>()
        / 100_000.0;
    assert!((mean - 0.5772).abs() < 0.02, "Gumbel mean {mean}");
}

#[test]
fn attention_forms_agree_with_padding_and_empty_slots() {
    for (case, &(batch, n, heads, d, keys)) in [
        (1, 1, 1, 1, 1),
        (2, 13, 3, 17, 5),
        (1, 70, 2, 64, 33),
        (2, 9, 4, 40, 12),
    ]
    .iter()
    .enumerate()
    {
        let shape = SparseShape::new(batch, n, heads, d, keys).unwrap();
        let mut rng = Rng::new(100 + case as u64);
        let mut vec = |len: usize| {
            (0..len)
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect::<Vec<f32>>()
        };
        let (q, k, v) = (vec(shape.elems()), vec(shape.elems()), vec(shape.elems()));
        let indices: Vec<i32> = (0..shape.index_len())
            .map(|x| {
                if x % 7 == 3 {
                    -1
                } else {
                    ((x * 31 + 5) % n) as i32
                }
            })
            .collect();
        let input = SparseInput {
            shape,
            q: &q,
            k: &k,
            v: &v,
            indices: &indices,
            scale: (d as f32).powf(-0.5),
        };
        let want = sparse_attention_reference(&input).unwrap();
        close("cpu", &sparse_attention_cpu(&input).unwrap(), &want);
        close("emulated", &emulated_attention(&input), &want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_shapes_agree(batch in 1usize..3, n in 1usize..40, heads in 1usize..4, d in 1usize..33,
                           keys in 1usize..20, seed in 0u64..100, self_first in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let lp = log_probs(batch, n, &mut rng);
        let mask = padding_mask(batch, n);
        let sel = SketchTopk { batch, seq_len: n, heads, keys, log_probs: &lp, mask: Some(&mask),
                               gumbel_seed: Some(seed), include_self: self_first };
        let idx = sketch_topk_reference(&sel).unwrap();
        prop_assert_eq!(&sketch_topk_cpu(&sel).unwrap(), &idx);
        prop_assert_eq!(&emulated_topk(&sel), &idx);
        let shape = SparseShape::new(batch, n, heads, d, keys).unwrap();
        let mut vec = |len: usize| (0..len).map(|_| rng.uniform(-2.0, 2.0)).collect::<Vec<f32>>();
        let (q, k, v) = (vec(shape.elems()), vec(shape.elems()), vec(shape.elems()));
        let input = SparseInput { shape, q: &q, k: &k, v: &v, indices: &idx, scale: 0.3 };
        let want = sparse_attention_reference(&input).unwrap();
        close("cpu", &sparse_attention_cpu(&input).unwrap(), &want);
        close("emulated", &emulated_attention(&input), &want);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let shape = SparseShape::new(1, 4, 1, 2, 2).unwrap();
    let x = vec![0.0f32; 8];
    let bad_idx = [0, 4, 1, 2, 3, 0, -2, 1];
    let input = SparseInput {
        shape,
        q: &x,
        k: &x,
        v: &x,
        indices: &bad_idx,
        scale: 1.0,
    };
    assert!(matches!(
        sparse_attention_cpu(&input),
        Err(KernelError::Invalid { .. })
    ));
    let short = SparseInput {
        indices: &bad_idx[..7],
        ..input
    };
    assert!(matches!(
        sparse_attention_cpu(&short),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        SparseShape::new(1, 4, 1, 2, 0),
        Err(KernelError::Empty { .. })
    ));
    assert!(matches!(
        attention_plan(SparseShape::new(1, 4, 1, 2, 257).unwrap()),
        Err(KernelError::TooLarge { .. })
    ));
    assert!(matches!(
        topk_plan(SparseShape::new(1, 20_000, 1, 1, 4).unwrap()),
        Err(KernelError::TooLarge { .. })
    ));
}
