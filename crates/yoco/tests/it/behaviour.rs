//! YOCO behaviour beyond the fixtures: bad configs, tensors and inputs are errors; the shared KV
//! cache refuses to overflow; self-decoder state stays constant; batches equal sequences alone;
//! and the cache is one KV set, not one per layer.
#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use yoco::{Config, YocoError};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh directory of its own for each call: tests run at once, and two of them loading the
/// same fixture into one directory would read each other's half-copied files.
fn scratch(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{call}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join("config.json")).unwrap()).unwrap()
}

/// The fixture `name` with its config's `max_batch_size` raised to `batch` (the fixture says 1,
/// and caches are refused past it).
fn load_for_batch(name: &str, batch: usize) -> yoco::Model {
    let d = scratch(&format!("{name}-batch{batch}"));
    let mut cfg = config_json(name);
    cfg["max_batch_size"] = batch.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        dir(name).join("model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    yoco::load(&d, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn bad_configs_are_errors() {
    let base = config_json("yoco_gate_retention");
    for (key, value, needle) in [
        ("n_layers", serde_json::json!(3), "odd"),
        ("n_attn_kv_heads", serde_json::json!(3), "n_attn_kv_heads"),
        ("sliding_window", serde_json::json!(0), "sliding_window"),
        (
            "model_parallel_size",
            serde_json::json!(2),
            "model_parallel_size",
        ),
        ("dim", serde_json::json!(0), "dim"),
        ("rope_scaling", serde_json::json!(2.0), "rope_scaling"),
    ] {
        let mut cfg = base.clone();
        cfg[key] = value;
        let e = Config::from_json(&cfg.to_string()).unwrap_err();
        assert!(matches!(e, YocoError::Config(_)), "{key}: {e:?}");
        assert!(e.to_string().contains(needle), "{key}: {e}");
    }
}

#[test]
fn missing_and_misshapen_tensors_name_the_key() {
    let tensors = candle_core::safetensors::load(
        dir("yoco_sliding_window").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let cfg = std::fs::read_to_string(dir("yoco_sliding_window").join("config.json")).unwrap();
    let write = |d: &Path, t: &HashMap<String, Tensor>| {
        std::fs::write(d.join("config.json"), &cfg).unwrap();
        candle_core::safetensors::save(t, d.join("model.safetensors")).unwrap();
    };
    let d = scratch("yoco_missing");
    let mut t = tensors.clone();
    t.remove("cross_decoder.kv_layer_norm.weight");
    write(&d, &t);
    let e = yoco::load(&d, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("cross_decoder.kv_layer_norm.weight"), "{e}");
    let d = scratch("yoco_misshapen");
    let mut t = tensors;
    t.insert(
        "cross_decoder.k_proj.weight".into(),
        Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    write(&d, &t);
    let e = yoco::load(&d, &Device::Cpu).unwrap_err().to_string();
    assert!(
        e.contains("cross_decoder.k_proj.weight") && e.contains("32, 64"),
        "{e}"
    );
}

#[test]
fn bad_inputs_and_cache_overflow_are_errors() {
    let model = yoco::load(&dir("yoco_gate_retention"), &Device::Cpu).unwrap();
    let mut cache = model.new_cache(1, 6).unwrap();
    let e = model
        .forward(&[[1u32, 300]], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("token id 300") && e.contains("vocab_size 256"),
        "{e}"
    );
    let empty: [&[u32]; 1] = [&[]];
    assert!(model
        .forward(&empty, &mut cache)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    model.forward(&[[1u32, 2, 3, 4]], &mut cache).unwrap();
    let e = model.forward(&[[1u32, 2, 3]], &mut cache).unwrap_err();
    assert!(matches!(e, YocoError::Cache(_)), "{e:?}");
    assert!(e.to_string().contains("capacity of 6"), "{e}");
    assert_eq!(cache.len(), 4, "a refused call leaves the cache as it was");
    let e = model.prefill(&[[1u32, 2, 3]], &mut cache, 2).unwrap_err();
    assert!(
        matches!(e, YocoError::Cache(_)),
        "early-exit prefill checks capacity first: {e:?}"
    );
    assert_eq!(cache.len(), 4);
    assert!(model.new_cache(0, 4).is_err());
    let e = model.new_cache(2, 8).unwrap_err().to_string();
    assert!(e.contains("max_batch_size 1"), "{e}");
    let e = model.new_cache(1, 513).unwrap_err().to_string();
    assert!(e.contains("max_seq_len 512"), "{e}");
    let e = model.new_cache(1, usize::MAX).unwrap_err().to_string();
    assert!(e.contains("max_seq_len"), "{e}");
    let model = load_for_batch("yoco_gate_retention", 2);
    let mut two = model.new_cache(2, 8).unwrap();
    let e = model
        .forward(&[vec![1u32, 2], vec![3]], &mut two)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one length"), "{e}");
}

#[test]
fn a_batch_equals_each_sequence_alone() {
    for name in ["yoco_gate_retention", "yoco_sliding_window"] {
        let model = load_for_batch(name, 2);
        let a: Vec<u32> = (0..13).map(|i| (i * 37 + 5) % 256).collect();
        let b: Vec<u32> = (0..13).map(|i| (i * 11 + 200) % 256).collect();
        let mut both = model.new_cache(2, 14).unwrap();
        let joint = flat(&model.forward(&[&a, &b], &mut both).unwrap());
        let next = flat(&model.forward_last(&[[1u32], [2u32]], &mut both).unwrap());
        let mut alone = Vec::new();
        let mut alone_next = Vec::new();
        for (s, id) in [(&a, 1u32), (&b, 2u32)] {
            let mut c = model.new_cache(1, 14).unwrap();
            alone.extend(flat(&model.forward(&[s], &mut c).unwrap()));
            alone_next.extend(flat(&model.forward_last(&[[id]], &mut c).unwrap()));
        }
        let d = joint
            .iter()
            .zip(&alone)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{name}: batched prefill differs by {d}");
        let d = next
            .iter()
            .zip(&alone_next)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{name}: batched decode differs by {d}");
    }
}

#[test]
fn self_decoder_state_is_constant_and_the_kv_cache_is_shared() {
    for (name, window) in [
        ("yoco_gate_retention", None),
        ("yoco_sliding_window", Some(4)),
    ] {
        let model = yoco::load(&dir(name), &Device::Cpu).unwrap();
        let cfg = model.config().clone();
        let (dim, layers) = (cfg.dim, cfg.half_layers());
        let kv_row = cfg.n_attn_kv_heads * cfg.attn_head_dim();
        let mut sizes = Vec::new();
        for capacity in [16, 64, 256] {
            let mut cache = model.new_cache(1, capacity).unwrap();
            // Run past several windows.
            let ids: Vec<u32> = (0..capacity as u32).map(|i| i % 256).collect();
            model.prefill(&[&ids], &mut cache, 7).unwrap();
            let bytes = model.cache_bytes(&cache);
            // ONE K/V set for the whole cross-decoder, whatever its depth.
            assert_eq!(bytes.shared_kv, 2 * capacity * kv_row * 4, "{name}");
            sizes.push(bytes.self_decoder);
        }
        assert!(
            sizes.iter().all(|&s| s == sizes[0]),
            "{name}: self-decoder state grew: {sizes:?}"
        );
        let per_layer = match window {
            None => cfg.n_self_heads * cfg.self_head_dim() * cfg.self_head_dim() * 4,
            Some(w) => 2 * w * dim * 4,
        };
        assert_eq!(sizes[0], layers * per_layer, "{name}");
    }
}
