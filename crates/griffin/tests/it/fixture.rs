//! The RecurrentGemma fixture (HF transformers 5.24 outputs) through the real loader.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use crate::common::{fixture_dir, flat, max_abs_diff};

use candle_core::{DType, Device, IndexOp};
use griffin::generation::greedy;
use griffin::load;

struct Golden {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    new_tokens: Vec<u32>,
    step_logits: Vec<f32>,
    full_sequence_logits: Vec<f32>,
    vocab: usize,
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(fixture_dir().join("golden.json")).unwrap();
    let g: serde_json::Value = serde_json::from_str(&text).unwrap();
    Golden {
        input_ids: ids(&g["input_ids"][0]),
        logits: floats(&g["logits"]),
        new_tokens: ids(&g["generate"]["new_tokens"]),
        step_logits: floats(&g["generate"]["step_logits"]),
        full_sequence_logits: floats(&g["full_sequence_logits"]["logits"]),
        vocab: g["logits_shape"][2].as_u64().unwrap() as usize,
    }
}

#[test]
fn prompt_logits_match_reference() {
    let g = golden();
    let model = load(&fixture_dir(), DType::F32, &Device::Cpu).unwrap();
    let mut state = model.new_state(1).unwrap();
    let logits = model.forward(&[&g.input_ids], &mut state).unwrap();
    assert_eq!(logits.dims(), &[1, g.input_ids.len(), g.vocab]);
    let d = max_abs_diff(&flat(&logits), &g.logits);
    println!("prompt logits: max abs diff {d:.2e}");
    assert!(d < 1e-4, "max |logits - reference| = {d}");
}

#[test]
fn greedy_tokens_and_step_logits_match_reference() {
    let g = golden();
    let model = load(&fixture_dir(), DType::F32, &Device::Cpu).unwrap();
    let (_, tokens) = greedy(&model, &g.input_ids, g.new_tokens.len()).unwrap();
    assert_eq!(tokens, g.new_tokens);
    // Step by step with the cache: each step's logits are the reference's step_logits.
    let mut state = model.new_state(1).unwrap();
    let prompt_logits = model.forward(&[&g.input_ids], &mut state).unwrap();
    let mut steps = vec![flat(&prompt_logits.i((0, g.input_ids.len() - 1)).unwrap())];
    for &tok in &g.new_tokens[..g.new_tokens.len() - 1] {
        steps.push(flat(&model.forward(&[[tok]], &mut state).unwrap()));
    }
    let d = max_abs_diff(&steps.concat(), &g.step_logits);
    println!("step logits: max abs diff {d:.2e}");
    assert!(d < 1e-4, "max |step logits - reference| = {d}");
}

#[test]
fn uncached_full_sequence_matches_reference_and_cached_decoding() {
    let g = golden();
    let model = load(&fixture_dir(), DType::F32, &Device::Cpu).unwrap();
    // The reference's uncached pass covers the prompt and the first 15 generated tokens.
    let n = g.new_tokens.len() - 1;
    let sequence: Vec<u32> = g
        .input_ids
        .iter()
        .chain(&g.new_tokens[..n])
        .copied()
        .collect();
    let mut state = model.new_state(1).unwrap();
    let full = flat(&model.forward(&[&sequence], &mut state).unwrap());
    let d = max_abs_diff(&full, &g.full_sequence_logits);
    println!("full-sequence logits: max abs diff {d:.2e}");
    assert!(d < 1e-4, "max |full-sequence logits - reference| = {d}");
    // Cached decoding of the same sequence, one token at a time, equals the parallel pass.
    let mut state = model.new_state(1).unwrap();
    let stepped: Vec<f32> = sequence
        .iter()
        .flat_map(|&t| flat(&model.forward(&[[t]], &mut state).unwrap()))
        .collect();
    let d = max_abs_diff(&stepped, &full);
    assert!(d < 1e-4, "max |one token at a time - parallel| = {d}");
}

#[test]
fn chunked_prefill_equals_one_shot() {
    let g = golden();
    let whole = load(&fixture_dir(), DType::F32, &Device::Cpu).unwrap();
    let mut state = whole.new_state(1).unwrap();
    let one_shot = flat(&whole.forward(&[&g.input_ids], &mut state).unwrap());
    for chunk in [1, 3, 5, 8, 9] {
        let model = whole.clone().with_prefill_chunk(chunk);
        let mut state = model.new_state(1).unwrap();
        let chunked = flat(&model.forward(&[&g.input_ids], &mut state).unwrap());
        let d = max_abs_diff(&chunked, &one_shot);
        // Equal up to f32 rounding of different matmul shapes (the reference's own cached vs
        // uncached logits differ by 2.8e-5).
        assert!(d < 1e-4, "chunk {chunk}: max diff {d}");
    }
}

#[test]
fn last_position_logits_equal_the_full_pass() {
    let g = golden();
    let model = load(&fixture_dir(), DType::F32, &Device::Cpu)
        .unwrap()
        .with_prefill_chunk(7);
    let (mut s1, mut s2) = (model.new_state(1).unwrap(), model.new_state(1).unwrap());
    let full = model.forward(&[&g.input_ids], &mut s1).unwrap();
    let last = model.forward_last(&[&g.input_ids], &mut s2).unwrap();
    assert_eq!(last.dims(), &[1, g.vocab]);
    // Equal up to the rounding of a 1-row versus a 7-row output matmul.
    let d = max_abs_diff(
        &flat(&last),
        &flat(&full.i((0, g.input_ids.len() - 1)).unwrap()),
    );
    assert!(d < 1e-5, "forward_last differs from the full pass by {d}");
    assert_eq!(s1.positions(), s2.positions());
}
