//! Loader and model behaviour beyond the fixtures: the legacy scale convention, mislabelled
//! scales, missing and misshapen tensors, bad configs and inputs, sharding, chunked prefill,
//! weight memory and the binary (original BitNet) layer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use crate::common::{fixture_dir, flat, golden, max_abs_diff, scratch};
use bitnet::{BitLinear, BitNetError, Config};
use candle_core::{DType, Device, Tensor};

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_dir(name).join("model.safetensors"), &Device::Cpu)
        .unwrap()
}

fn config_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir(name).join("config.json")).unwrap())
        .unwrap()
}

/// Writes a checkpoint directory from a config and tensors.
fn write(dir: &Path, config: &serde_json::Value, tensors: &HashMap<String, Tensor>) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
}

fn load(dir: &Path) -> bitnet::Result<bitnet::Model> {
    bitnet::load(dir, DType::F32, &Device::Cpu)
}

fn prompt_logits(model: &bitnet::Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(1, ids.len()).unwrap();
    flat(&model.forward(&[ids], &mut cache).unwrap())
}

fn invert_scales(t: &mut HashMap<String, Tensor>) {
    for (k, v) in t.iter_mut() {
        if k.ends_with("weight_scale") {
            *v = v.recip().unwrap();
        }
    }
}

#[test]
fn legacy_bitlinear_class_divides_by_its_inverted_scale() {
    let g = golden("bitnet_packed");
    let dir = scratch("legacy");
    let mut cfg = config_json("bitnet_packed");
    cfg["quantization_config"] = serde_json::json!({"quant_method": "bitnet"});
    let mut t = tensors("bitnet_packed");
    invert_scales(&mut t);
    write(&dir, &cfg, &t);
    let model = load(&dir).unwrap();
    let d = max_abs_diff(&prompt_logits(&model, &g.input_ids), &g.logits);
    assert!(d < 1e-4, "legacy class: logits differ by {d}");
}

#[test]
fn mislabelled_scales_are_errors() {
    // The packed file (scale = mean|W|) declared as the legacy class (scale = 1/mean|W|).
    let dir = scratch("mislabelled_legacy");
    let mut cfg = config_json("bitnet_packed");
    cfg["quantization_config"]["linear_class"] = "bitlinear".into();
    write(&dir, &cfg, &tensors("bitnet_packed"));
    let e = load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("weight_scale") && e.contains("autobitlinear"),
        "{e}"
    );
    // Inverted scales declared as autobitlinear.
    let dir = scratch("mislabelled_auto");
    let mut t = tensors("bitnet_packed");
    invert_scales(&mut t);
    write(&dir, &config_json("bitnet_packed"), &t);
    let e = load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.layers.0.") && e.contains("weight_scale"),
        "{e}"
    );
    assert!(e.contains("inverse"), "{e}");
}

#[test]
fn missing_and_misshapen_tensors_name_the_key() {
    let dir = scratch("missing");
    let mut t = tensors("bitnet_packed");
    t.remove("model.layers.1.mlp.down_proj.weight_scale");
    write(&dir, &config_json("bitnet_packed"), &t);
    let e = load(&dir).unwrap_err();
    assert!(matches!(e, BitNetError::Weights(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("model.layers.1.mlp.down_proj.weight_scale"),
        "{e}"
    );

    let dir = scratch("misshapen");
    let mut t = tensors("bitnet_master");
    t.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        Tensor::zeros((16, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    write(&dir, &config_json("bitnet_master"), &t);
    let e = load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.layers.0.self_attn.k_proj.weight"), "{e}");
    assert!(
        e.contains("16, 64") && e.contains("32, 64"),
        "expected and found shapes: {e}"
    );
}

#[test]
fn unsupported_configs_are_errors() {
    let base = config_json("bitnet_packed");
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("hidden_act", serde_json::json!({"hidden_act": "silu"})),
        (
            "quantization_config",
            serde_json::json!({"quantization_config": null}),
        ),
        (
            "linear_class",
            serde_json::json!({"quantization_config": {"quant_method": "bitnet", "linear_class": "fancy"}}),
        ),
        (
            "quant_method",
            serde_json::json!({"quantization_config": {"quant_method": "gptq"}}),
        ),
        ("model_type", serde_json::json!({"model_type": "llama"})),
        (
            "num_key_value_heads",
            serde_json::json!({"num_key_value_heads": 3}),
        ),
        (
            "rope_type",
            serde_json::json!({"rope_parameters": {"rope_theta": 10000.0, "rope_type": "yarn"}}),
        ),
    ];
    for (what, patch) in cases {
        let mut cfg = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let e = Config::from_json(&cfg.to_string()).unwrap_err();
        assert!(matches!(e, BitNetError::Config(_)), "{what}: {e:?}");
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    // Both rope forms are read.
    let mut cfg = base.clone();
    cfg.as_object_mut().unwrap().remove("rope_parameters");
    cfg["rope_theta"] = 10_000.0.into();
    assert_eq!(
        Config::from_json(&cfg.to_string()).unwrap().rope_theta,
        10_000.0
    );
    assert_eq!(
        Config::from_json(&base.to_string()).unwrap().rope_theta,
        500_000.0
    );
}

#[test]
fn bad_inputs_are_errors() {
    let model = load(&fixture_dir("bitnet_packed")).unwrap();
    let mut cache = model.new_cache(1, 8).unwrap();
    let e = model
        .forward(&[[1u32, 256]], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("token id 256") && e.contains("vocab_size 256"),
        "{e}"
    );
    let empty: [&[u32]; 1] = [&[]];
    assert!(model
        .forward(&empty, &mut cache)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    model.forward(&[[1u32; 6]], &mut cache).unwrap();
    let e = model.forward(&[[1u32; 3]], &mut cache).unwrap_err();
    assert!(matches!(e, BitNetError::Cache(_)), "{e:?}");
    assert!(e.to_string().contains("capacity of 8"), "{e}");
    assert_eq!(cache.len(), 6, "a refused call leaves the cache as it was");
    assert!(
        model.new_cache(1, 129).is_err(),
        "past max_position_embeddings"
    );
    let e = bitnet::load(&fixture_dir("bitnet_packed"), DType::F16, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("f16"), "{e}");
}

#[test]
fn sharded_checkpoint_loads_the_same() {
    let g = golden("bitnet_packed");
    let dir = scratch("sharded");
    std::fs::copy(
        fixture_dir("bitnet_packed").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let t = tensors("bitnet_packed");
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (k, v) in t {
        let (shard, file) = if k.contains("layers.1") {
            (&mut b, "model-00002-of-00002.safetensors")
        } else {
            (&mut a, "model-00001-of-00002.safetensors")
        };
        map.insert(k.clone(), file.into());
        shard.insert(k, v);
    }
    candle_core::safetensors::save(&a, dir.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let model = load(&dir).unwrap();
    let d = max_abs_diff(&prompt_logits(&model, &g.input_ids), &g.logits);
    assert!(d < 1e-4, "sharded: {d}");
}

#[test]
fn chunked_prefill_equals_one_pass() {
    let g = golden("bitnet_master");
    let model = load(&fixture_dir("bitnet_master")).unwrap();
    let one = prompt_logits(&model, &g.input_ids);
    let mut cache = model.new_cache(1, g.input_ids.len()).unwrap();
    let mut chunked = Vec::new();
    for chunk in g.input_ids.chunks(7) {
        chunked.extend(flat(&model.forward(&[chunk], &mut cache).unwrap()));
    }
    let d = max_abs_diff(&chunked, &one);
    assert!(d < 1e-5, "chunked prefill differs by {d}");
    // A batch of two sequences equals each alone.
    let other: Vec<u32> = g.input_ids.iter().rev().copied().collect();
    let mut cache = model.new_cache(2, g.input_ids.len()).unwrap();
    let both = flat(&model.forward(&[&g.input_ids, &other], &mut cache).unwrap());
    let mut alone = one.clone();
    alone.extend(prompt_logits(&model, &other));
    let d = max_abs_diff(&both, &alone);
    assert!(d < 1e-5, "batched differs by {d}");
}

#[test]
fn weight_memory_is_a_quarter_byte_per_parameter() {
    // 2B4T-like proportions at widths that need no padding (multiples of 128).
    let (h, i, layers, heads, kv, vocab) = (256usize, 640usize, 2usize, 4usize, 2usize, 512usize);
    let d = h / heads;
    let mut cfg = config_json("bitnet_packed");
    for (k, v) in [
        ("hidden_size", h),
        ("intermediate_size", i),
        ("num_hidden_layers", layers),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv),
        ("vocab_size", vocab),
    ] {
        cfg[k] = v.into();
    }
    let dev = Device::Cpu;
    let mut t = HashMap::new();
    let mut seed = 1u32;
    let mut packed = |rows: usize, cols: usize| {
        let v: Vec<u8> = (0..rows / 4 * cols)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let c = |s: u32| ((s >> (8 + 2 * s.count_ones() % 4)) % 3) as u8;
                c(seed) | c(seed >> 3) << 2 | c(seed >> 6) << 4 | c(seed >> 9) << 6
            })
            .collect();
        Tensor::from_vec(v, (rows / 4, cols), &dev).unwrap()
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &dev).unwrap();
    let mut params = 0;
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, rows, cols) in [
            ("self_attn.q_proj", heads * d, h),
            ("self_attn.k_proj", kv * d, h),
            ("self_attn.v_proj", kv * d, h),
            ("self_attn.o_proj", h, heads * d),
            ("mlp.gate_proj", i, h),
            ("mlp.up_proj", i, h),
            ("mlp.down_proj", h, i),
        ] {
            t.insert(format!("{p}.{name}.weight"), packed(rows, cols));
            t.insert(
                format!("{p}.{name}.weight_scale"),
                (ones(1) * 0.02).unwrap(),
            );
            params += rows * cols;
        }
        t.insert(format!("{p}.input_layernorm.weight"), ones(h));
        t.insert(format!("{p}.post_attention_layernorm.weight"), ones(h));
        t.insert(format!("{p}.self_attn.attn_sub_norm.weight"), ones(h));
        t.insert(format!("{p}.mlp.ffn_sub_norm.weight"), ones(i));
    }
    t.insert("model.norm.weight".into(), ones(h));
    t.insert(
        "model.embed_tokens.weight".into(),
        Tensor::randn(0f32, 1.0, (vocab, h), &dev).unwrap(),
    );
    let dir = scratch("memory");
    write(&dir, &cfg, &t);
    let model = load(&dir).unwrap();
    let w = model.weight_bytes();
    assert_eq!(w.ternary_params, params);
    assert_eq!(
        w.packed,
        params / 4 + 4 * 7 * layers,
        "packed bytes = params / 4 + one f32 scale per matrix"
    );
    assert_eq!(w.float, (vocab * h + h * (1 + 3 * layers) + i * layers) * 4);
    // It runs.
    let mut cache = model.new_cache(1, 4).unwrap();
    let logits = model.forward(&[[1u32, 2, 3]], &mut cache).unwrap();
    assert_eq!(logits.dims(), &[1, 3, vocab]);
}

#[test]
fn binarized_bitlinear_is_the_original_bitnet_layer() {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (6, 200), &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 200), &dev).unwrap();
    let layer = BitLinear::binarized(&w).unwrap();
    let y = flat(&layer.forward(&x).unwrap());
    // Float math: sign(W − mean W)·mean|W| against the per-token absmax-quantised input.
    let wv: Vec<f32> = flat(&w);
    let alpha = wv.iter().sum::<f32>() / wv.len() as f32;
    let beta = wv.iter().map(|v| v.abs()).sum::<f32>() / wv.len() as f32;
    let xv = flat(&x);
    for t in 0..6 {
        let row = &xv[t * 200..(t + 1) * 200];
        let s = 127.0 / row.iter().fold(0f32, |m, v| m.max(v.abs()));
        for o in 0..6 {
            let want: f32 = (0..200)
                .map(|k| {
                    let sign = if wv[o * 200 + k] - alpha > 0.0 {
                        1.0
                    } else {
                        -1.0
                    };
                    (row[k] * s).round_ties_even() / s * sign * beta
                })
                .sum();
            let got = y[t * 6 + o];
            assert!(
                (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                "[{t}, {o}]: {got} vs {want}"
            );
        }
    }
}

/// The 12-bit head is exact: on the fixture with its embedding in bf16 (the values the format
/// stores losslessly) the model holds it in that form by default, lookups included, and the
/// logits (a whole prompt: the blocked product; decoding: the GEMV) are the plain bf16 head's up to
/// the order of f32 sums, greedy decoding picks the same tokens, and a 4-bit head quantised from
/// either form is the same. On the f32 fixture as shipped the head stays f32, and asking for the
/// 12-bit form is an error.
#[test]
fn compact_head_is_exact() {
    let name = "bitnet_packed";
    let mut t = tensors(name);
    let key = "model.embed_tokens.weight";
    let embedding = t[key].to_dtype(DType::BF16).unwrap();
    t.insert(key.into(), embedding);
    let dir = scratch("compact_head");
    write(&dir, &config_json(name), &t);
    let compact = load(&dir).unwrap();
    assert!(compact.has_compact_head());
    let mut plain = load(&dir).unwrap();
    plain.plain_head().unwrap();
    assert!(!plain.has_compact_head());

    let g = golden(name);
    let (a, b) = (
        prompt_logits(&plain, &g.input_ids),
        prompt_logits(&compact, &g.input_ids),
    );
    let largest = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(&a, &b);
    assert!(d <= 1e-5 * largest, "compact head logits differ by {d}");
    let steps = g.new_tokens.len();
    let (_, plain_tokens) = bitnet::generation::greedy(&plain, &g.input_ids, steps).unwrap();
    let (_, compact_tokens) = bitnet::generation::greedy(&compact, &g.input_ids, steps).unwrap();
    assert_eq!(plain_tokens, compact_tokens);

    // 1.5 bytes a weight, a 16-byte table and a row start per row; no exceptions expected on
    // rows this narrow, so below bf16's 2 bytes. The bf16 table is gone.
    let c = compact.config();
    let (vocab, hidden) = (c.vocab_size, c.hidden_size);
    let (wc, wp) = (compact.weight_bytes(), plain.weight_bytes());
    assert!(
        wc.compact_head >= vocab * hidden * 3 / 2 && wc.compact_head < vocab * hidden * 2,
        "{} bytes",
        wc.compact_head
    );
    assert_eq!(wp.compact_head, 0);
    assert_eq!(wp.float - wc.float, 2 * vocab * hidden);

    // A 4-bit head quantised from the 12-bit form (decoded) is the one quantised from bf16.
    let (mut q_compact, mut q_plain) = (compact.clone(), plain.clone());
    q_compact.quantize_head().unwrap();
    q_plain.quantize_head().unwrap();
    assert_eq!(
        prompt_logits(&q_compact, &g.input_ids),
        prompt_logits(&q_plain, &g.input_ids)
    );

    let mut f32_model = load(&fixture_dir(name)).unwrap();
    assert!(!f32_model.has_compact_head());
    let e = f32_model.compact_head().unwrap_err().to_string();
    assert!(e.contains("not a bf16"), "{e}");
}
