//! Griffin (RecurrentGemma) on the CPU: prefill tokens/s at T = 512 and 2048, and decode time per
//! token after a 128-token prompt, for frugal's `griffin` and, side by side in the same run on the
//! same random weights, candle-transformers' `recurrent_gemma` (the Rust peer, SPEC §6).
//!
//! Configs (as in the project's peer measurements): "tiny" = hidden 64, 4 layers, 4 heads, window 8,
//! vocab 256 (the fixture's shape); "small" = hidden 512, 6 layers (r, r, a),
//! 8 heads × 64, lru 512, window 256, vocab 32000, MLP 1536 per branch; "2b-layers" = the 2B's
//! widths (2560, 10 × 256, lru 2560, MLP 7680, vocab 256000) with 3 layers (r, r, a).
//!
//! Both compute logits only for the last prompt position. Read ratios off one run: criterion
//! prints each line's time and throughput (elements = tokens).
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

struct Pair {
    ours: griffin::Model,
    peer: candle_transformers::models::recurrent_gemma::Model,
    vocab: u32,
}

fn hf_config(
    hidden: usize,
    layers: usize,
    heads: usize,
    window: usize,
    vocab: usize,
) -> serde_json::Value {
    serde_json::json!({
        "model_type": "recurrent_gemma", "num_hidden_layers": layers, "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": 6 * hidden, "num_attention_heads": heads,
        "num_key_value_heads": 1, "head_dim": hidden / heads, "lru_width": hidden,
        "attention_window_size": window, "conv1d_width": 4, "logits_soft_cap": 30.0,
        "hidden_activation": "gelu_pytorch_tanh", "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "block_types": ["recurrent", "recurrent", "attention"],
        "attention_bias": false
    })
}

fn pair(json: &serde_json::Value) -> Pair {
    let cfg = griffin::Config::from_json(&json.to_string()).expect("config");
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let ours = griffin::Model::new(&cfg, vb).expect("our model");
    // The same tensors, by name, for the peer.
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let peer_cfg = serde_json::from_value(json.clone()).expect("peer config");
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let peer = candle_transformers::models::recurrent_gemma::Model::new(&peer_cfg, vb.pp("model"))
        .expect("peer model");
    Pair {
        ours,
        peer,
        vocab: cfg.vocab_size as u32,
    }
}

fn tokens(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13) % vocab).collect()
}

fn bench_config(c: &mut Criterion, name: &str, json: serde_json::Value, prefill: &[usize]) {
    let p = pair(&json);
    let mut group = c.benchmark_group(format!("griffin_{name}"));
    group.sample_size(10);
    for &t in prefill {
        let prompt = tokens(t, p.vocab);
        group.throughput(Throughput::Elements(t as u64));
        group.bench_with_input(
            BenchmarkId::new("prefill/frugal", t),
            &prompt,
            |b, prompt| {
                b.iter(|| {
                    let mut state = p.ours.new_state(1).expect("state");
                    p.ours.forward_last(&[prompt], &mut state).expect("prefill")
                })
            },
        );
        let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("ids");
        group.bench_with_input(BenchmarkId::new("prefill/candle", t), &ids, |b, ids| {
            b.iter_batched(
                || p.peer.clone(),
                |mut peer| peer.forward(ids, 0).expect("peer prefill"),
                BatchSize::LargeInput,
            )
        });
    }
    // One decode step after a 128-token prompt, from a copy of the prefilled state.
    let prompt = tokens(128, p.vocab);
    let mut state = p.ours.new_state(1).expect("state");
    p.ours
        .forward_last(&[&prompt], &mut state)
        .expect("prefill");
    let mut peer = p.peer.clone();
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    peer.forward(&ids, 0).expect("peer prefill");
    let next = Tensor::new(&[[5u32]], &Device::Cpu).expect("next");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_after_128/frugal", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| p.ours.forward_last(&[[5u32]], &mut s).expect("step"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode_after_128/candle", |b| {
        b.iter_batched(
            || peer.clone(),
            |mut m| m.forward(&next, 128).expect("peer step"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    frugal_benches::pin_threads();
    // Narrow: per-timestep overheads dominate, where a parallel scan matters most.
    let mut tiny = hf_config(64, 4, 4, 8, 256);
    tiny["intermediate_size"] = 192.into();
    bench_config(c, "tiny", tiny, &[512, 2048]);
    bench_config(c, "small", hf_config(512, 6, 8, 256, 32_000), &[512, 2048]);
    if std::env::var_os("FRUGAL_BENCH_QUICK").is_none() {
        bench_config(
            c,
            "2b_layers",
            hf_config(2560, 3, 10, 2048, 256_000),
            &[512],
        );
    }
}

criterion_group!(griffin_benches, benches);
criterion_main!(griffin_benches);
