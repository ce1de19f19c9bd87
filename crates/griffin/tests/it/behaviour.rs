//! Padding, state size, loading variants and errors, on the fixture checkpoint.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use crate::common::{fixture_dir, flat, max_abs_diff};
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use griffin::{load, Config, Model};

fn model() -> Model {
    load(&fixture_dir(), DType::F32, &Device::Cpu).unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best }) as u32
}

/// A scratch directory holding the fixture's config and the given tensors.
fn checkpoint_with(name: &str, tensors: &HashMap<String, Tensor>, config: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("griffin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = match config {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string(fixture_dir().join("config.json")).unwrap(),
    };
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
    dir
}

fn fixture_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

/// Prompts longer and shorter than the window (8), decoded a few greedy steps.
const A: &[u32] = &[
    2, 106, 66, 98, 250, 217, 136, 104, 248, 221, 173, 253, 167, 159, 10, 153, 58,
];
const B: &[u32] = &[2, 7, 99, 31, 5];

/// Each sequence alone: its prompt logits and 6 greedy steps' logits.
fn alone(model: &Model, prompt: &[u32]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut state = model.new_state(1).unwrap();
    let logits = model.forward(&[prompt], &mut state).unwrap();
    let mut last = flat(&logits.i((0, prompt.len() - 1)).unwrap());
    let mut steps = Vec::new();
    for _ in 0..6 {
        let next = argmax(&last);
        last = flat(&model.forward(&[[next]], &mut state).unwrap());
        steps.push(last.clone());
    }
    (flat(&logits), steps)
}

fn padded_batch_matches_alone(left: bool) {
    let model = model();
    let t = A.len().max(B.len());
    let pad = |p: &[u32]| -> (Vec<u32>, Vec<bool>) {
        let n = t - p.len();
        let (mut ids, mut real) = (vec![0u32; n], vec![false; n]);
        if left {
            ids.extend_from_slice(p);
            real.extend(std::iter::repeat_n(true, p.len()));
        } else {
            ids.splice(0..0, p.iter().copied());
            real.splice(0..0, std::iter::repeat_n(true, p.len()));
        }
        (ids, real)
    };
    let (ids_a, real_a) = pad(A);
    let (ids_b, real_b) = pad(B);
    let mut state = model.new_state(2).unwrap();
    let logits = model
        .forward_padded(
            &[ids_a, ids_b],
            &[real_a.clone(), real_b.clone()],
            &mut state,
        )
        .unwrap();
    let vocab = model.config().vocab_size;
    for (row, (prompt, real)) in [(A, &real_a), (B, &real_b)].into_iter().enumerate() {
        let (want, want_steps) = alone(&model, prompt);
        let got: Vec<f32> = (0..t)
            .filter(|&i| real[i])
            .flat_map(|i| flat(&logits.i((row, i)).unwrap()))
            .collect();
        let d = max_abs_diff(&got, &want);
        assert!(
            d < 1e-4,
            "left={left} row {row}: prompt logits differ from alone by {d}"
        );
        assert_eq!(got.len(), prompt.len() * vocab);
        // Continue both in the batch; each row must decode as it does alone.
        let _ = want_steps;
    }
    let (_, steps_a) = alone(&model, A);
    let (_, steps_b) = alone(&model, B);
    let mut next = [
        argmax(&flat(
            &logits
                .i((0, t - 1 - if left { 0 } else { t - A.len() }))
                .unwrap(),
        )),
        argmax(&flat(
            &logits
                .i((1, if left { t - 1 } else { B.len() - 1 }))
                .unwrap(),
        )),
    ];
    for i in 0..6 {
        let step = model.forward(&[[next[0]], [next[1]]], &mut state).unwrap();
        let (sa, sb) = (
            flat(&step.i((0, 0)).unwrap()),
            flat(&step.i((1, 0)).unwrap()),
        );
        let d = max_abs_diff(&sa, &steps_a[i]).max(max_abs_diff(&sb, &steps_b[i]));
        assert!(
            d < 1e-4,
            "left={left} decode step {i}: batch differs from alone by {d}"
        );
        next = [argmax(&sa), argmax(&sb)];
    }
}

#[test]
fn left_padding_does_not_leak_into_state() {
    padded_batch_matches_alone(true);
}

#[test]
fn right_padding_does_not_leak_into_state() {
    padded_batch_matches_alone(false);
}

#[test]
fn state_size_is_constant_past_many_windows() {
    let model = model();
    let mut state = model.new_state(1).unwrap();
    let initial = state.size_in_bytes();
    model.forward(&[A], &mut state).unwrap();
    assert_eq!(state.size_in_bytes(), initial);
    let mut next = 5u32;
    for _ in 0..50 {
        // 67 tokens in all: more than eight windows of 8.
        let logits = model.forward(&[[next]], &mut state).unwrap();
        next = argmax(&flat(&logits));
        assert_eq!(state.size_in_bytes(), initial);
    }
    assert_eq!(state.positions(), &[A.len() as i64 + 50]);
}

#[test]
fn top_level_rope_config_form_loads_the_same_model() {
    // The published checkpoints' form: rope_theta and partial_rotary_factor at the top level.
    let text = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = json.as_object_mut().unwrap();
    obj.remove("rope_parameters");
    obj.insert("rope_theta".into(), 10000.0.into());
    obj.insert("partial_rotary_factor".into(), 0.5.into());
    let old = Config::from_json(&text).unwrap();
    let new = Config::from_json(&json.to_string()).unwrap();
    assert_eq!(old, new);
    // A different theta is read, not ignored.
    obj_theta(&mut json, 500.0);
    assert_eq!(
        Config::from_json(&json.to_string()).unwrap().rope_theta,
        500.0
    );
}

fn obj_theta(json: &mut serde_json::Value, theta: f64) {
    json.as_object_mut()
        .unwrap()
        .insert("rope_theta".into(), theta.into());
}

#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let tensors = fixture_tensors();
    let model = model();
    let mut state = model.new_state(1).unwrap();
    let want = flat(&model.forward(&[A], &mut state).unwrap());

    // Two shards with an index.
    let dir = checkpoint_with("sharded", &HashMap::new(), None);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let (mut first, mut second) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in tensors.iter().enumerate() {
        let (shard, file) = if i % 2 == 0 {
            (&mut first, "model-00001-of-00002.safetensors")
        } else {
            (&mut second, "model-00002-of-00002.safetensors")
        };
        shard.insert(k.clone(), v.clone());
        map.insert(k.clone(), file.into());
    }
    candle_core::safetensors::save(&first, dir.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&second, dir.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = load(&dir, DType::F32, &Device::Cpu).unwrap();
    let mut state = sharded.new_state(1).unwrap();
    assert_eq!(flat(&sharded.forward(&[A], &mut state).unwrap()), want);

    // Weights stored in bf16 and f16 load into an f32 model exactly as their f32 values do.
    for dtype in [DType::BF16, DType::F16] {
        let stored: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap()))
            .collect();
        let widened: HashMap<String, Tensor> = stored
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(DType::F32).unwrap()))
            .collect();
        let a = load(
            &checkpoint_with("half", &stored, None),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let b = load(
            &checkpoint_with("widened", &widened, None),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let (mut sa, mut sb) = (a.new_state(1).unwrap(), b.new_state(1).unwrap());
        assert_eq!(
            flat(&a.forward(&[A], &mut sa).unwrap()),
            flat(&b.forward(&[A], &mut sb).unwrap()),
            "{dtype:?}"
        );
    }
}

#[test]
fn runs_in_bf16() {
    let f32_model = model();
    let bf16_model = load(&fixture_dir(), DType::BF16, &Device::Cpu).unwrap();
    let (mut s32, mut s16) = (
        f32_model.new_state(1).unwrap(),
        bf16_model.new_state(1).unwrap(),
    );
    let a = f32_model.forward(&[A], &mut s32).unwrap();
    let b = bf16_model.forward(&[A], &mut s16).unwrap();
    assert_eq!(b.dtype(), DType::F32, "logits are returned in f32");
    let (a, b) = (flat(&a), flat(&b));
    assert!(b.iter().all(|v| v.is_finite()));
    // bf16 keeps 8 significant bits: close, not equal, to the f32 run (logits span ±22).
    let d = max_abs_diff(&a, &b);
    assert!(d < 1.5, "bf16 run is off the f32 run by {d}");
    let vocab = f32_model.config().vocab_size;
    let agree = (0..A.len())
        .filter(|&t| {
            argmax(&a[t * vocab..(t + 1) * vocab]) == argmax(&b[t * vocab..(t + 1) * vocab])
        })
        .count();
    assert!(
        agree * 10 >= A.len() * 8,
        "top-1 agrees at only {agree} of {} positions",
        A.len()
    );
    assert!(load(&fixture_dir(), DType::F16, &Device::Cpu)
        .unwrap_err()
        .to_string()
        .contains("use f32 or bf16"));
}

#[test]
fn bad_checkpoints_and_inputs_are_clear_errors() {
    let mut tensors = fixture_tensors();
    let key = "model.layers.1.temporal_block.rg_lru.input_gate_weight";
    let saved = tensors.remove(key).unwrap();
    let err = load(
        &checkpoint_with("missing", &tensors, None),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(key), "{err}");
    tensors.insert(
        key.into(),
        Tensor::zeros((4, 16, 15), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load(
        &checkpoint_with("misshapen", &tensors, None),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(key) && err.contains("[4, 16, 16]") && err.contains("[4, 16, 15]"),
        "{err}"
    );
    tensors.insert(key.into(), saved);

    let text = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    let bad = text.replace("\"attention\"", "\"mamba\"");
    let err = load(
        &checkpoint_with("badcfg", &tensors, Some(&bad)),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown block `mamba`"), "{err}");
    let bad = text.replace("gelu_pytorch_tanh", "relu");
    assert!(Config::from_json(&bad)
        .unwrap_err()
        .to_string()
        .contains("hidden_activation `relu`"));

    let model = model();
    let mut state = model.new_state(1).unwrap();
    let err = model
        .forward(&[[3, 256]], &mut state)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token id 256") && err.contains("vocab_size 256"),
        "{err}"
    );
    let empty: [&[u32]; 1] = [&[]];
    assert!(model
        .forward(&empty, &mut state)
        .unwrap_err()
        .to_string()
        .contains("empty input"));
    let err = model
        .forward(&[[1u32], [2]], &mut state)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state holds 1 sequences, input has 2"),
        "{err}"
    );
}

#[test]
fn hawk_is_the_same_crate_with_every_block_recurrent() {
    // The fixture's recurrent layers (0, 1, 3) as a 3-layer Hawk: block_types = ["recurrent"].
    let text = std::fs::read_to_string(fixture_dir().join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["block_types"] = serde_json::json!(["recurrent"]);
    json["num_hidden_layers"] = 3.into();
    let mut tensors = fixture_tensors();
    tensors.retain(|k, _| !k.starts_with("model.layers.2.") && !k.starts_with("model.layers.3."));
    for (k, v) in fixture_tensors() {
        if let Some(rest) = k.strip_prefix("model.layers.3.") {
            tensors.insert(format!("model.layers.2.{rest}"), v);
        }
    }
    let hawk = load(
        &checkpoint_with("hawk", &tensors, Some(&json.to_string())),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!((0..3).all(|i| hawk.config().block_type(i) == griffin::BlockType::Recurrent));
    // All-recurrent: constant state with no attention ring, and stepping equals the parallel pass.
    let mut state = hawk.new_state(1).unwrap();
    let parallel = flat(&hawk.forward(&[A], &mut state).unwrap());
    let mut state = hawk.new_state(1).unwrap();
    let stepped: Vec<f32> = A
        .iter()
        .flat_map(|&t| flat(&hawk.forward(&[[t]], &mut state).unwrap()))
        .collect();
    assert!(max_abs_diff(&parallel, &stepped) < 1e-4);
    let presets = [
        Config::recurrent_gemma_2b(),
        Config::recurrent_gemma_9b(),
        Config::griffin_7b(),
        Config::hawk_7b(),
    ];
    for p in presets {
        p.validate().unwrap();
    }
    assert_eq!(
        Config::hawk_7b().block_types,
        vec![griffin::BlockType::Recurrent]
    );
    assert_eq!(
        Config::recurrent_gemma_2b().block_type(2),
        griffin::BlockType::Attention
    );
}
