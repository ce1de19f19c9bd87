//! The official-code fixtures through the real loader: parallel logits, the reference's greedy
//! decoding (early-exit prefill, then one token per step), step-by-step decoding against the
//! parallel pass, and chunked prefill against one-shot prefill, for both self-decoders.
#![allow(clippy::unwrap_used)]
use std::path::PathBuf;

use candle_core::{Device, IndexOp, Tensor};
use yoco::generation::greedy;

const TOL: f32 = 1e-4;
const VARIANTS: [&str; 2] = ["yoco_gate_retention", "yoco_sliding_window"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Golden {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    new_tokens: Vec<u32>,
    step_logits: Vec<f32>,
    full_ids: Vec<u32>,
    full_logits: Vec<f32>,
}

fn golden(name: &str) -> Golden {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir(name).join("golden.json")).unwrap())
            .unwrap();
    let f = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let u = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Golden {
        input_ids: u(&g["input_ids"][0]),
        logits: f(&g["logits"]),
        new_tokens: u(&g["generate"]["new_tokens"]),
        step_logits: f(&g["generate"]["step_logits"]),
        full_ids: u(&g["full_sequence_ids"]),
        full_logits: f(&g["full_sequence_logits"]),
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn parallel_logits_match_reference() {
    for name in VARIANTS {
        let g = golden(name);
        let model = yoco::load(&dir(name), &Device::Cpu).unwrap();
        let mut cache = model.new_cache(1, g.input_ids.len()).unwrap();
        let logits = model.forward(&[&g.input_ids], &mut cache).unwrap();
        let d = max_diff(&flat(&logits), &g.logits);
        eprintln!("{name}: prompt logits max |diff| {d:.2e}");
        assert!(d < TOL, "{name}: prompt logits differ by {d}");
        let mut cache = model.new_cache(1, g.full_ids.len()).unwrap();
        let full = model.forward(&[&g.full_ids], &mut cache).unwrap();
        let d = max_diff(&flat(&full), &g.full_logits);
        assert!(d < TOL, "{name}: full-sequence logits differ by {d}");
    }
}

#[test]
fn greedy_decoding_matches_reference() {
    for name in VARIANTS {
        let g = golden(name);
        let model = yoco::load(&dir(name), &Device::Cpu).unwrap();
        let (tokens, steps) = greedy(&model, &g.input_ids, g.new_tokens.len()).unwrap();
        assert_eq!(tokens, g.new_tokens, "{name}: greedy tokens");
        let d = max_diff(&flat(&steps), &g.step_logits);
        eprintln!("{name}: decode step logits max |diff| {d:.2e}");
        assert!(d < TOL, "{name}: step logits differ by {d}");
    }
}

#[test]
fn step_by_step_decoding_equals_the_parallel_pass() {
    for name in VARIANTS {
        let g = golden(name);
        let model = yoco::load(&dir(name), &Device::Cpu).unwrap();
        let n = g.full_ids.len();
        let mut cache = model.new_cache(1, n).unwrap();
        let parallel = model.forward(&[&g.full_ids], &mut cache).unwrap();
        let mut cache = model.new_cache(1, n).unwrap();
        for (t, &id) in g.full_ids.iter().enumerate() {
            let step = model.forward_last(&[[id]], &mut cache).unwrap();
            let d = max_diff(&flat(&step), &flat(&parallel.i((0, t)).unwrap()));
            assert!(
                d < 2e-5,
                "{name}: position {t}: step-by-step differs by {d}"
            );
        }
    }
}

#[test]
fn chunked_early_exit_prefill_equals_one_shot() {
    for name in VARIANTS {
        let g = golden(name);
        let model = yoco::load(&dir(name), &Device::Cpu).unwrap();
        let n = g.full_ids.len();
        let mut cache = model.new_cache(1, n).unwrap();
        let full = model.forward(&[&g.full_ids], &mut cache).unwrap();
        let want = flat(&full.i((0, n - 1)).unwrap());
        for chunk in [1, 3, 8, 1000] {
            let mut cache = model.new_cache(1, n).unwrap();
            let got = model.prefill(&[&g.full_ids], &mut cache, chunk).unwrap();
            let d = max_diff(&flat(&got), &want);
            assert!(
                d < 2e-5,
                "{name}: early-exit prefill in chunks of {chunk} differs by {d}"
            );
            assert_eq!(cache.len(), n);
            // Decoding continues from the early-exit cache as from a full one.
            let mut full_cache = model.new_cache(1, n + 1).unwrap();
            model.forward(&[&g.full_ids], &mut full_cache).unwrap();
            let mut cache2 = model.new_cache(1, n + 1).unwrap();
            model.prefill(&[&g.full_ids], &mut cache2, chunk).unwrap();
            let a = model.forward_last(&[[7u32]], &mut full_cache).unwrap();
            let b = model.forward_last(&[[7u32]], &mut cache2).unwrap();
            assert!(
                max_diff(&flat(&a), &flat(&b)) < 2e-5,
                "{name}: decode after chunk {chunk}"
            );
        }
    }
}
