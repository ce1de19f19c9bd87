//! The Fastformer fixture (official code's outputs) through the real loader: embedding output,
//! every layer's output, pooled vector and logits of a padded batch, within 1e-4.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use fastformer::{load, Config};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(g: &serde_json::Value) -> Vec<Vec<u32>> {
    g["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let d = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-4, "{what}: max |ours - reference| = {d}");
}

#[test]
fn every_output_matches_the_reference_on_a_padded_batch() {
    let g = golden();
    let model = load(&dir(), &Device::Cpu).unwrap();
    let out = model.forward(&ids(&g)).unwrap();
    assert_close(
        "embedding_output",
        &flat(&out.embedding_output),
        &floats(&g["embedding_output"]),
    );
    let layers: Vec<f32> = out.layer_outputs.iter().flat_map(flat).collect();
    // The reference stacks layers first: [layers, B, T, D].
    assert_eq!(
        g["layer_outputs_shape"][0].as_u64().unwrap() as usize,
        out.layer_outputs.len()
    );
    assert_close("layer_outputs", &layers, &floats(&g["layer_outputs"]));
    assert_close(
        "hidden_states",
        &flat(out.layer_outputs.last().unwrap()),
        &floats(&g["hidden_states"]),
    );
    assert_close("pooled", &flat(&out.pooled), &floats(&g["pooled"]));
    assert_close("logits", &flat(&out.logits), &floats(&g["logits"]));
    assert_eq!(out.logits.dims(), &[2, model.config().num_labels]);
}

#[test]
fn padding_changes_nothing_for_the_padded_row() {
    let g = golden();
    let model = load(&dir(), &Device::Cpu).unwrap();
    let batch = ids(&g);
    let padded = model.forward(&batch).unwrap();
    let row: Vec<u32> = batch[1].iter().copied().filter(|&id| id != 0).collect();
    let alone = model.forward(&[row]).unwrap();
    let want = flat(&padded.logits)[model.config().num_labels..].to_vec();
    assert_close("row 1 alone vs padded", &flat(&alone.logits), &want);
}

#[test]
fn bad_inputs_and_configs_are_clear_errors() {
    let model = load(&dir(), &Device::Cpu).unwrap();
    let err = model.forward(&[vec![1; 65]]).unwrap_err().to_string();
    assert!(
        err.contains("sequence length 65 is past max_position_embeddings 64"),
        "{err}"
    );
    let err = model.forward(&[vec![1, 300]]).unwrap_err().to_string();
    assert!(
        err.contains("token id 300 in sequence 0 is out of range"),
        "{err}"
    );
    let err = model
        .forward(&[vec![1, 2], vec![0, 0]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sequence 1 is all padding"), "{err}");
    assert!(model
        .forward(&[vec![1, 2], vec![3]])
        .unwrap_err()
        .to_string()
        .contains("one length"));
    assert!(model
        .forward(&[])
        .unwrap_err()
        .to_string()
        .contains("empty input"));
    let text = std::fs::read_to_string(dir().join("config.json")).unwrap();
    let err = Config::from_json(&text.replace("weightpooler", "cls"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pooler_type `cls`"), "{err}");
    let err = Config::from_json(
        &text.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a multiple"), "{err}");
}

#[test]
fn layer_sharing_reads_layer_zero_for_every_layer() {
    let text = std::fs::read_to_string(dir().join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["share_layers"] = true.into();
    let cfg = Config::from_json(&json.to_string()).unwrap();
    let weights = dir().join("model.safetensors");
    let vb =
        layers::weights::var_builder(&[weights], candle_core::DType::F32, &Device::Cpu).unwrap();
    let shared = fastformer::Model::new(&cfg, vb).unwrap();
    let base = load(&dir(), &Device::Cpu).unwrap();
    let batch = ids(&golden());
    let (a, b) = (
        shared.forward(&batch).unwrap(),
        base.forward(&batch).unwrap(),
    );
    // Layer 0 is the same; layer 1 differs (it now reuses layer 0's weights).
    assert_eq!(flat(&a.layer_outputs[0]), flat(&b.layer_outputs[0]));
    assert_ne!(flat(&a.layer_outputs[1]), flat(&b.layer_outputs[1]));
}

#[test]
fn missing_or_misshapen_tensors_name_the_key() {
    let mut tensors =
        candle_core::safetensors::load(dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let scratch = std::env::temp_dir().join(format!("fastformer-bad-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::copy(dir().join("config.json"), scratch.join("config.json")).unwrap();
    let key = "fastformer_model.encoders.1.attention.self.key_att.weight";
    let saved = tensors.remove(key).unwrap();
    candle_core::safetensors::save(&tensors, scratch.join("model.safetensors")).unwrap();
    let err = load(&scratch, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains(key), "{err}");
    tensors.insert(key.into(), saved.narrow(1, 0, 63).unwrap());
    candle_core::safetensors::save(&tensors, scratch.join("model.safetensors")).unwrap();
    let err = load(&scratch, &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains(key) && err.contains("[4, 64]") && err.contains("[4, 63]"),
        "{err}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
