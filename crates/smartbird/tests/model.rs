//! Smart Bird has no reference implementation, so these tests carry the weight: sparse attention
//! with every key and no noise equals dense attention; selection is per head, seeded, and never
//! picks padding; a saved model loads to the same outputs; bad input is an error.
#![allow(clippy::unwrap_used)]
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use smartbird::{AttentionMode, Config, Model, Sampling, SmartBirdError};

fn config(keys: usize, sampling: Sampling) -> Config {
    Config {
        hidden_size: 32,
        num_attention_heads: 4,
        num_hidden_layers: 2,
        intermediate_size: 64,
        max_position_embeddings: 64,
        vocab_size: 100,
        layer_norm_eps: 1e-12,
        num_labels: 3,
        pad_token_id: 0,
        sketch_dim: 8,
        keys_per_query: keys,
        sampling,
        seed: 5,
        include_self: false,
    }
}

fn batch() -> Vec<Vec<u32>> {
    vec![
        (1..=20).map(|i| (i * 7) % 99 + 1).collect(),
        (1..=20)
            .map(|i| if i <= 13 { (i * 11) % 99 + 1 } else { 0 })
            .collect(),
    ]
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn every_key_without_noise_equals_dense_attention() {
    let (model, _) = Model::random(&config(20, Sampling::TopK), &Device::Cpu).unwrap();
    let sparse = model.forward_with(&batch(), AttentionMode::Sparse).unwrap();
    let dense = model.forward_with(&batch(), AttentionMode::Dense).unwrap();
    let d = max_diff(&flat(&sparse.hidden), &flat(&dense.hidden));
    assert!(d < 1e-5, "hidden states differ by {d}");
    assert!(max_diff(&flat(&sparse.logits), &flat(&dense.logits)) < 1e-5);
    // Fewer keys than tokens is a different (sparse) computation.
    let (few, _) = Model::random(&config(4, Sampling::TopK), &Device::Cpu).unwrap();
    let s = few.forward_with(&batch(), AttentionMode::Sparse).unwrap();
    let dn = few.forward_with(&batch(), AttentionMode::Dense).unwrap();
    assert!(max_diff(&flat(&s.hidden), &flat(&dn.hidden)) > 1e-3);
}

#[test]
fn selection_is_per_head_seeded_and_skips_padding() {
    let cfg = config(6, Sampling::Gumbel);
    let (model, _) = Model::random(&cfg, &Device::Cpu).unwrap();
    let ids = batch();
    let out = model.forward(&ids).unwrap();
    assert_eq!(out.indices.len(), 2, "one index set per layer");
    let (heads, n, k) = (4, 20, 6);
    for layer in &out.indices {
        assert_eq!(layer.len(), 2 * heads * n * k);
        for (row, slots) in layer.chunks(k).enumerate() {
            let b = row / (heads * n);
            for &j in slots {
                assert!(j >= 0, "20 and 13 tokens are enough for 6 keys");
                assert_ne!(ids[b][j as usize], 0, "padding selected");
            }
        }
        let head = |h: usize| &layer[h * n * k..(h + 1) * n * k];
        assert!(
            (1..heads).any(|h| head(h) != head(0)),
            "heads share one index set"
        );
    }
    assert_ne!(
        out.indices[0], out.indices[1],
        "layers draw different noise"
    );
    let again = model.forward(&ids).unwrap();
    assert_eq!(again.indices, out.indices, "same seed, same indices");
    assert_eq!(flat(&again.logits), flat(&out.logits));
    // Another seed: same weights, other draws.
    let dir = scratch("smartbird_seed");
    let (m, vars) = Model::random(&cfg, &Device::Cpu).unwrap();
    smartbird::save(
        &dir,
        &Config {
            seed: 6,
            ..cfg.clone()
        },
        &vars,
    )
    .unwrap();
    let other = smartbird::load(&dir, &Device::Cpu).unwrap();
    assert_ne!(
        other.forward(&ids).unwrap().indices,
        m.forward(&ids).unwrap().indices
    );
    // Deterministic top-K: every head the same.
    let (det, _) = Model::random(&config(6, Sampling::TopK), &Device::Cpu).unwrap();
    let idx = &det.forward(&ids).unwrap().indices[0];
    assert_eq!(&idx[..n * k], &idx[n * k..2 * n * k]);
}

#[test]
fn include_self_keeps_the_own_position_first() {
    let cfg = Config {
        include_self: true,
        ..config(3, Sampling::Gumbel)
    };
    let (model, _) = Model::random(&cfg, &Device::Cpu).unwrap();
    let ids = batch();
    let out = model.forward(&ids).unwrap();
    let (heads, n, k) = (4, 20, 3);
    for (row, slots) in out.indices[0].chunks(k).enumerate() {
        let (b, i) = (row / (heads * n), row % n);
        if ids[b][i] != 0 {
            assert_eq!(slots[0], i as i32);
        }
    }
}

#[test]
fn a_padded_row_equals_the_row_alone() {
    let (model, _) = Model::random(&config(5, Sampling::TopK), &Device::Cpu).unwrap();
    let ids = batch();
    let both = model.forward(&ids).unwrap();
    let alone = model.forward(&[ids[1][..13].to_vec()]).unwrap();
    let row: Vec<f32> = flat(&both.logits)[3..6].to_vec();
    let d = max_diff(&row, &flat(&alone.logits));
    assert!(d < 1e-5, "padding leaks into the logits: {d}");
}

#[test]
fn save_and_load_reproduce_the_outputs() {
    let cfg = config(5, Sampling::Gumbel);
    let (model, vars) = Model::random(&cfg, &Device::Cpu).unwrap();
    let dir = scratch("smartbird_roundtrip");
    smartbird::save(&dir, &cfg, &vars).unwrap();
    let loaded = smartbird::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), &cfg);
    let (a, b) = (
        model.forward(&batch()).unwrap(),
        loaded.forward(&batch()).unwrap(),
    );
    assert_eq!(a.indices, b.indices);
    assert_eq!(flat(&a.logits), flat(&b.logits));
}

#[test]
fn bad_configs_inputs_and_checkpoints_are_errors() {
    for (field, value) in [
        ("keys_per_query", 0usize),
        ("sketch_dim", 0),
        ("num_attention_heads", 5),
    ] {
        let mut json: serde_json::Value =
            serde_json::from_str(&config(4, Sampling::TopK).to_json().unwrap()).unwrap();
        json[field] = value.into();
        let e = Config::from_json(&json.to_string()).unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&config(4, Sampling::TopK).to_json().unwrap()).unwrap();
    json["sampling"] = "nucleus".into();
    assert!(matches!(
        Config::from_json(&json.to_string()),
        Err(SmartBirdError::Config(_))
    ));

    let (model, vars) = Model::random(&config(4, Sampling::TopK), &Device::Cpu).unwrap();
    let input = |ids: Vec<Vec<u32>>| model.forward(&ids).unwrap_err().to_string();
    assert!(input(vec![]).contains("empty"));
    assert!(input(vec![vec![1, 100]]).contains("token id 100"));
    assert!(input(vec![vec![1; 65]]).contains("max_position_embeddings"));
    assert!(input(vec![vec![1, 2], vec![0, 0]]).contains("all padding"));
    assert!(input(vec![vec![1, 2], vec![3]]).contains("one length"));

    let dir = scratch("smartbird_missing");
    smartbird::save(&dir, &config(4, Sampling::TopK), &vars).unwrap();
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("encoder.layer.1.sketch.key.weight");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = smartbird::load(&dir, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("encoder.layer.1.sketch.key.weight"), "{e}");
}
