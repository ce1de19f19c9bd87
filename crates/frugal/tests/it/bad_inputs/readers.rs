//! The config and safetensors readers fed arbitrary input: an error or a value, never a panic.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::checkpoint::fixture;

/// Every model crate's config reader on `text`; each may refuse it, none may panic.
fn read_configs(text: &str) {
    let _ = griffin::Config::from_json(text);
    let _ = bitnet::Config::from_json(text);
    let _ = yoco::Config::from_json(text);
    let _ = fastformer::Config::from_json(text);
    let _ = smartbird::Config::from_json(text);
    let _ = transformer::Config::from_json(text);
}

/// Any JSON value, with numbers at the edges configs meet (0, negative, huge, fractional).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(2),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0.0f64),
            Just(-0.5),
            Just(1e308),
            Just(1e-308),
            Just(0.5),
            any::<f64>()
        ]
        .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
        .prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The fixtures' configs (and a transformer one), to mutate one key at a time: most of a
/// mutated config is valid, so the readers' later checks are reached.
fn base_configs() -> Vec<Value> {
    let mut configs: Vec<Value> = [
        "griffin/tests/fixtures/config.json",
        "bitnet/tests/fixtures/bitnet_packed/config.json",
        "yoco/tests/fixtures/yoco_gate_retention/config.json",
        "yoco/tests/fixtures/yoco_sliding_window/config.json",
        "fastformer/tests/fixtures/config.json",
    ]
    .iter()
    .map(|rel| serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap())
    .collect();
    configs.push(json!({
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "sketch_dim": 8, "keys_per_query": 4, "max_position_embeddings": 64
    }));
    configs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_readers_never_panic_on_any_json(v in json_value()) {
        read_configs(&v.to_string());
    }

    #[test]
    fn config_readers_never_panic_on_any_text(s in "\\PC{0,64}") {
        read_configs(&s);
    }

    #[test]
    fn config_readers_never_panic_on_one_mutated_key(
        which in 0usize..6,
        key_pick in any::<prop::sample::Index>(),
        value in json_value(),
        nested in any::<bool>(),
    ) {
        let mut cfg = base_configs().swap_remove(which);
        let keys: Vec<String> = cfg.as_object().unwrap().keys().cloned().collect();
        let key = key_pick.get(&keys).clone();
        if nested && cfg[&key].is_object() {
            let inner: Vec<String> = cfg[&key].as_object().unwrap().keys().cloned().collect();
            if let Some(k) = inner.first() {
                cfg[&key][k] = value;
            }
        } else {
            cfg[&key] = value;
        }
        read_configs(&cfg.to_string());
    }
}

fn scratch_file() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad_inputs/readers");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!(
        "{}-{}.safetensors",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Opens `bytes` as a safetensors file through the checked loader and reads tensor `t` every
/// way a model does: with and without a shape, as floats and as packed bytes.
fn read_safetensors(bytes: &[u8], shape: &[usize]) {
    let path = scratch_file();
    std::fs::write(&path, bytes).unwrap();
    if let Ok(vb) =
        layers::weights::var_builder(std::slice::from_ref(&path), DType::F32, &Device::Cpu)
    {
        let _ = vb.get_unchecked("t");
        let _ = vb.get(shape, "t");
        let _ = vb.get_with_hints_dtype(shape, "t", candle_nn::Init::Const(0.0), DType::U8);
        let _ = vb.get((2, 2), "missing");
    }
    std::fs::remove_file(&path).unwrap();
}

fn dtype_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "X",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn safetensors_reader_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_safetensors(&bytes, &[2, 2]);
    }

    #[test]
    fn safetensors_reader_never_panics_on_any_header(
        dtype in dtype_name(),
        shape in prop::collection::vec(0usize..6, 0..4),
        start in 0usize..40,
        len in 0usize..80,
        data in prop::collection::vec(any::<u8>(), 0..96),
        pad in 0usize..8,
    ) {
        let header = json!({"t": {"dtype": dtype, "shape": shape, "data_offsets": [start, start + len]}});
        let mut text = header.to_string();
        text.push_str(&" ".repeat(pad));
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text.as_bytes());
        bytes.extend(&data);
        read_safetensors(&bytes, &shape);
    }
}
