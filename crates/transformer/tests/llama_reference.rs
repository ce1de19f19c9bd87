//! The dense Transformer against candle-transformers' Llama on the same random weights: prompt
//! logits, cached decoding, GQA and tied embeddings; and its own behaviour (chunked prefill,
//! batches, cache size, errors).
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::llama as peer;
use transformer::{Config, Transformer, TransformerError};

fn config_json(kv_heads: usize, tied: bool) -> serde_json::Value {
    serde_json::json!({
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": kv_heads, "vocab_size": 101,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2
    })
}

/// Our model and the peer's, on one set of random weights (norm weights randomised too, so a
/// swapped norm would show). `bf16`: every value a bf16 (a bf16 checkpoint loaded in f32), which
/// our model keeps in bf16 and the peer holds in f32.
fn pair(json: &serde_json::Value, bf16: bool) -> (Transformer, peer::Llama, peer::Config) {
    let cfg = Config::from_json(&json.to_string()).expect("config");
    let map = VarMap::new();
    Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )
    .expect("build");
    // Deterministic noise, uniform in ±0.5 (norm weights 1 ± 0.5): the same weights every run.
    let mut vars: Vec<_> = map
        .data()
        .lock()
        .expect("varmap")
        .clone()
        .into_iter()
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (_, var) in vars {
        let noise: Vec<f32> = (0..var.elem_count())
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let noise = Tensor::from_vec(noise, var.shape(), &Device::Cpu).expect("noise");
        let noise = if var.dims().len() == 1 {
            (noise + 1.0).expect("shift")
        } else {
            noise
        };
        let noise = if bf16 {
            let rounded = noise.to_dtype(DType::BF16).expect("bf16");
            rounded.to_dtype(DType::F32).expect("f32")
        } else {
            noise
        };
        var.set(&noise).expect("set");
    }
    let ours = Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )
    .expect("ours");
    let tensors: HashMap<String, Tensor> = map
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let peer_cfg: peer::LlamaConfig = serde_json::from_value(json.clone()).expect("peer config");
    let peer_cfg = peer_cfg.into_config(false);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let theirs = peer::Llama::load(vb, &peer_cfg).expect("peer");
    (ours, theirs, peer_cfg)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

fn prompt(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + seed * 11 + 5) % 101)
        .collect()
}

fn check_against_peer(kv_heads: usize, tied: bool, bf16: bool) {
    let (ours, theirs, peer_cfg) = pair(&config_json(kv_heads, tied), bf16);
    let mut cache = ours.new_cache(1, 40).expect("cache");
    let mut peer_cache =
        peer::Cache::new(true, DType::F32, &peer_cfg, &Device::Cpu).expect("peer cache");
    let p = prompt(13, 1);
    let a = ours.forward_last(&[&p], &mut cache).expect("ours");
    let ids = Tensor::new(p.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    let b = theirs.forward(&ids, 0, &mut peer_cache).expect("peer");
    let d = max_diff(&a, &b);
    assert!(d < 1e-4, "prompt logits differ by {d}");
    // Cached decoding, one token at a time, with the peer's cache alongside.
    for (i, next) in [7u32, 99, 0, 42, 13].into_iter().enumerate() {
        let a = ours.forward_last(&[[next]], &mut cache).expect("step");
        let ids = Tensor::new(&[[next]], &Device::Cpu).expect("ids");
        let b = theirs
            .forward(&ids, 13 + i, &mut peer_cache)
            .expect("peer step");
        let d = max_diff(&a, &b);
        assert!(d < 1e-4, "step {i} logits differ by {d}");
    }
    assert_eq!(cache.len(), 18);
}

#[test]
fn matches_candle_llama_multi_head() {
    check_against_peer(4, false, false);
}

/// bf16 weights stay bf16 in our model and are widened inside its kernels (the prompt's widened
/// matmul, the decode steps' GEMV): the logits are the peer's on the f32 values.
#[test]
fn a_bf16_checkpoint_kept_in_bf16_matches_candle_llama_in_f32() {
    check_against_peer(4, false, true);
    check_against_peer(2, true, true);
}

#[test]
fn matches_candle_llama_grouped_query_and_tied_embedding() {
    check_against_peer(2, true, false);
    check_against_peer(1, false, false);
}

/// A prompt longer than two of the model's prefill chunks (`PREFILL_CHUNK`): the same logits as
/// in one pass and in chunks of other sizes (to f32 rounding), near the peer's one pass (rounding
/// grows with the positions: the rotary angles and softmaxes over a thousand keys), and the
/// cached step after it continues from every position.
#[test]
fn a_prompt_past_two_prefill_chunks_equals_one_pass() {
    let n = 2 * transformer::PREFILL_CHUNK + 37;
    let mut json = config_json(2, false);
    json["max_position_embeddings"] = serde_json::json!(n + 8);
    let (ours, theirs, peer_cfg) = pair(&json, false);
    let p = prompt(n, 5);
    let run = |model: &Transformer| {
        let mut cache = model.new_cache(1, n + 1).expect("cache");
        let prompt = model.forward_last(&[&p], &mut cache).expect("prompt");
        assert_eq!(cache.len(), n);
        let step = model.forward_last(&[[7u32]], &mut cache).expect("step");
        (prompt, step)
    };
    let (a, a_step) = run(&ours);
    let scale = max_diff(&a, &a.zeros_like().expect("zeros"));
    for chunk in [n, 100, 7] {
        let (b, b_step) = run(&ours.clone().with_prefill_chunk(chunk));
        let (d, d_step) = (max_diff(&a, &b), max_diff(&a_step, &b_step));
        assert!(
            d <= 5e-6 * (1.0 + scale) && d_step <= 5e-6 * (1.0 + scale),
            "chunks of {chunk}: logits differ by {d}, the next step's by {d_step}"
        );
    }
    let mut peer_cache =
        peer::Cache::new(true, DType::F32, &peer_cfg, &Device::Cpu).expect("peer cache");
    let ids = Tensor::new(p.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    let b = theirs.forward(&ids, 0, &mut peer_cache).expect("peer");
    let d = max_diff(&a, &b);
    assert!(
        d <= 2e-4 * (1.0 + scale),
        "prompt logits differ from the peer's by {d}"
    );
    let ids = Tensor::new(&[[7u32]], &Device::Cpu).expect("ids");
    let b = theirs.forward(&ids, n, &mut peer_cache).expect("peer step");
    let d = max_diff(&a_step, &b);
    assert!(
        d <= 2e-4 * (1.0 + scale),
        "the step after the prompt differs by {d}"
    );
}

#[test]
fn chunked_prefill_and_batches_equal_one_pass() {
    let (ours, _, _) = pair(&config_json(2, false), false);
    let p = prompt(17, 3);
    let whole = ours
        .forward_last(&[&p], &mut ours.new_cache(1, 32).expect("cache"))
        .expect("whole");
    let mut cache = ours.new_cache(1, 32).expect("cache");
    for chunk in [&p[..1], &p[1..9], &p[9..16]] {
        ours.forward_last(&[chunk], &mut cache).expect("chunk");
    }
    let chunked = ours.forward_last(&[&p[16..]], &mut cache).expect("last");
    // Equal up to f32 rounding: one-token chunks take the GEMV, longer ones the matmul, which sum
    // in other orders.
    let scale = max_diff(&whole, &whole.zeros_like().expect("zeros"));
    let d = max_diff(&whole, &chunked);
    assert!(
        d <= 5e-6 * (1.0 + scale),
        "chunked prefill differs by {d} (logits up to {scale})"
    );
    // A batch of two equals each sequence alone.
    let q = prompt(17, 8);
    let both = ours
        .forward_last(&[&p, &q], &mut ours.new_cache(2, 17).expect("cache"))
        .expect("batch");
    let alone = ours
        .forward_last(&[&q], &mut ours.new_cache(1, 17).expect("cache"))
        .expect("alone");
    assert!(max_diff(&both.narrow(0, 0, 1).expect("row"), &whole) < 1e-5);
    assert!(max_diff(&both.narrow(0, 1, 1).expect("row"), &alone) < 1e-5);
}

#[test]
fn cache_grows_with_every_layer_and_position() {
    let (ours, _, _) = pair(&config_json(2, false), false);
    let mut cache = ours.new_cache(2, 1000).expect("cache");
    // 3 layers × keys and values × 2 sequences × 1000 positions × 2 KV heads × 16 dims × 4 bytes.
    assert_eq!(cache.bytes(), 3 * 2 * 2 * 1000 * 2 * 16 * 4);
    assert_eq!(cache.used_bytes(), 0);
    ours.forward_last(&[prompt(10, 0), prompt(10, 1)], &mut cache)
        .expect("prefill");
    assert_eq!(cache.used_bytes(), 3 * 2 * 2 * 10 * 2 * 16 * 4);
}

/// A cache kept in f16 or bf16 rounds each key and value once: the logits stay within the
/// rounding's reach of the f32 cache's (measured: 1.9e-3 of the largest logit with f16, 2.2e-2
/// with bf16, on these random weights), the bytes halve, and another dtype is refused by name.
#[test]
fn a_half_precision_cache_stays_near_f32_in_half_the_bytes() {
    let (ours, _, _) = pair(&config_json(2, false), false);
    let p = prompt(13, 4);
    let run = |dtype: DType| -> (Vec<Tensor>, usize) {
        let mut cache = ours.new_cache_in(1, 40, dtype).expect("cache");
        assert_eq!(cache.dtype(), dtype);
        let mut logits = vec![ours.forward_last(&[&p], &mut cache).expect("prefill")];
        for next in [7u32, 99, 0, 42, 13] {
            logits.push(ours.forward_last(&[[next]], &mut cache).expect("step"));
        }
        (logits, cache.bytes())
    };
    let (exact, bytes) = run(DType::F32);
    for (dtype, bound) in [(DType::F16, 5e-3), (DType::BF16, 5e-2)] {
        let (half, half_bytes) = run(dtype);
        assert_eq!(2 * half_bytes, bytes, "{dtype:?}");
        let worst = exact
            .iter()
            .zip(&half)
            .map(|(a, b)| max_diff(a, b))
            .fold(0.0f32, f32::max);
        let scale = exact
            .iter()
            .map(|a| max_diff(a, &a.zeros_like().expect("zeros")))
            .fold(0.0f32, f32::max);
        eprintln!(
            "{dtype:?} cache: logits within {:e} of the f32 cache's (relative to the largest)",
            worst / scale
        );
        assert!(
            worst > 0.0 && worst < bound * scale,
            "{dtype:?}: {worst} of {scale}"
        );
    }
    let e = ours
        .new_cache_in(1, 40, DType::U8)
        .expect_err("u8")
        .to_string();
    assert!(e.contains("u8") && e.contains("f32, f16 or bf16"), "{e}");
}

/// A prompt that fails in a later chunk (a token whose embedding is not finite, past the first
/// chunk) is an error, and the cache is as it was before the call: the positions the earlier
/// chunks recorded are given back.
#[test]
fn a_prompt_failing_in_a_later_chunk_leaves_the_cache_alone() {
    let cfg = Config::from_json(&config_json(2, false).to_string()).expect("config");
    let map = VarMap::new();
    let vb = || VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    Transformer::new(&cfg, vb()).expect("build");
    {
        let data = map.data().lock().expect("varmap");
        let embed = data.get("model.embed_tokens.weight").expect("embedding");
        let mut values = embed
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        values[100 * 64..101 * 64].fill(f32::NAN);
        let poisoned = Tensor::from_vec(values, embed.shape(), &Device::Cpu).expect("tensor");
        embed.set(&poisoned).expect("set");
    }
    let model = Transformer::new(&cfg, vb())
        .expect("ours")
        .with_prefill_chunk(4);
    let clean = |n, seed| -> Vec<u32> {
        prompt(n, seed)
            .into_iter()
            .map(|t| if t == 100 { 3 } else { t })
            .collect()
    };
    let mut cache = model.new_cache(1, 32).expect("cache");
    model
        .forward_last(&[clean(5, 0)], &mut cache)
        .expect("prefill");
    let before = model
        .forward_last(&[[3u32]], &mut cache.clone())
        .expect("next");
    let mut bad = clean(10, 1);
    bad[7] = 100; // in the second chunk of four
    let e = model
        .forward_last(&[bad], &mut cache)
        .expect_err("a non-finite embedding")
        .to_string();
    assert!(e.contains("finite"), "{e}");
    assert_eq!(cache.len(), 5);
    let after = model.forward_last(&[[3u32]], &mut cache).expect("next");
    assert!(max_diff(&before, &after) == 0.0);
}

#[test]
fn bad_input_is_an_error_that_leaves_the_cache_alone() {
    let (ours, _, _) = pair(&config_json(2, false), false);
    let mut cache = ours.new_cache(1, 8).expect("cache");
    ours.forward_last(&[prompt(5, 0)], &mut cache)
        .expect("prefill");
    let before = ours
        .forward_last(&[[3u32]], &mut cache.clone())
        .expect("next");
    let err = |r: transformer::Result<Tensor>| r.expect_err("must fail").to_string();
    let e = err(ours.forward_last(&[prompt(4, 0)], &mut cache));
    assert!(
        e.contains("5 cached + 4 new positions") && e.contains("capacity of 8"),
        "{e}"
    );
    let e = err(ours.forward_last(&[[101u32]], &mut cache));
    assert!(
        e.contains("token id 101") && e.contains("vocab_size 101"),
        "{e}"
    );
    let e = err(ours.forward_last(&[[1u32], [2]], &mut cache));
    assert!(e.contains("holds 1 sequences"), "{e}");
    let empty: [&[u32]; 1] = [&[]];
    assert!(err(ours.forward_last(&empty, &mut cache)).contains("empty input"));
    let ragged: [&[u32]; 2] = [&[1, 2], &[3]];
    assert!(
        err(ours.forward_last(&ragged, &mut ours.new_cache(2, 8).expect("cache")))
            .contains("one length")
    );
    assert_eq!(cache.len(), 5);
    let after = ours.forward_last(&[[3u32]], &mut cache).expect("next");
    assert!(max_diff(&before, &after) == 0.0);
}

#[test]
fn bad_configs_and_checkpoints_are_named() {
    let mut json = config_json(3, false);
    let e = Config::from_json(&json.to_string())
        .expect_err("3 does not divide 4")
        .to_string();
    assert!(e.contains("num_key_value_heads (3)"), "{e}");
    json = config_json(2, false);
    json["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    let e = Config::from_json(&json.to_string())
        .expect_err("scaling")
        .to_string();
    assert!(e.contains("rope_scaling"), "{e}");
    json = config_json(2, false);
    json["hidden_size"] = 66.into();
    let e = Config::from_json(&json.to_string())
        .expect_err("66 / 4")
        .to_string();
    assert!(e.contains("head_dim"), "{e}");
    // A checkpoint without one layer's key projection.
    let cfg = Config::from_json(&config_json(2, false).to_string()).expect("config");
    let map = VarMap::new();
    Transformer::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )
    .expect("build");
    let mut tensors: HashMap<String, Tensor> = map
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors.remove("model.layers.1.self_attn.k_proj.weight");
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    match Transformer::new(&cfg, vb) {
        Err(TransformerError::Weights(e)) => {
            assert!(e.contains("model.layers.1.self_attn.k_proj.weight"), "{e}")
        }
        other => panic!("expected a missing-tensor error, got {other:?}"),
    }
    // And one of the wrong shape.
    tensors.insert(
        "model.layers.1.self_attn.k_proj.weight".into(),
        Tensor::zeros((32, 63), DType::F32, &Device::Cpu).expect("zeros"),
    );
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let e = Transformer::new(&cfg, vb).expect_err("shape").to_string();
    assert!(
        e.contains("k_proj") && e.contains("[32, 64]") && e.contains("[32, 63]"),
        "{e}"
    );
}
