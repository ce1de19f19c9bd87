//! The table: every class of bad input on every architecture.
use std::path::Path;
use std::time::Duration;

use candle_core::DType;
use serde_json::json;

use super::checkpoint::{
    copy_checkpoint, edit_tensor, fixture, make_fifo, run, scratch, set_config, with_first,
};

/// Long enough for any clean error on 2 cores; a hang (a FIFO opened for reading) runs past it.
const DEADLINE: Duration = Duration::from_secs(60);

/// One architecture's checkpoint and how it is run.
struct Arch {
    name: &'static str,
    /// Writes a good checkpoint into the directory.
    make: fn(&Path),
    /// `logits` (decoders) or `classify` (encoders).
    command: &'static str,
    /// `--arch`, where config.json does not name the architecture.
    arch_flag: Option<&'static str>,
    ids: &'static str,
    /// A float weight the model reads.
    float_tensor: &'static str,
    /// A tensor, and the value all its elements are set to, that overflows the first layer.
    overflow: Option<(&'static str, f64)>,
    /// JSON pointers of config values that must be positive.
    positive_keys: &'static [&'static str],
    /// The JSON pointer of `pad_token_id`, where the config has one.
    pad_key: Option<&'static str>,
}

fn from_fixture(rel: &'static str) -> impl Fn(&Path) {
    move |dir| copy_checkpoint(&fixture(rel), dir)
}

const ARCHS: &[Arch] = &[
    Arch {
        name: "recurrent_gemma",
        make: |d| from_fixture("griffin/tests/fixtures")(d),
        command: "logits",
        arch_flag: None,
        ids: "2,5,9",
        float_tensor: "model.final_norm.weight",
        overflow: Some(("model.embed_tokens.weight", 3e38)),
        positive_keys: &[
            "/rms_norm_eps",
            "/rope_parameters/rope_theta",
            "/rope_parameters/partial_rotary_factor",
        ],
        pad_key: Some("/pad_token_id"),
    },
    Arch {
        name: "bitnet_packed",
        make: |d| from_fixture("bitnet/tests/fixtures/bitnet_packed")(d),
        command: "logits",
        arch_flag: None,
        ids: "1,5,9",
        float_tensor: "model.layers.0.input_layernorm.weight",
        // None: the scales are checked below 1 at load, an infinity entering a BitLinear is
        // saturated by its int8 quantisation, and the norms map overflowed rows to zero, so no
        // finite weight makes packed BitNet overflow in f32. The same model code's check is
        // exercised by `bitnet_master` below.
        overflow: None,
        positive_keys: &["/rms_norm_eps", "/rope_parameters/rope_theta"],
        pad_key: Some("/pad_token_id"),
    },
    Arch {
        name: "bitnet_master",
        make: |d| from_fixture("bitnet/tests/fixtures/bitnet_master")(d),
        command: "logits",
        arch_flag: None,
        ids: "1,5,9",
        float_tensor: "model.layers.0.mlp.down_proj.weight",
        overflow: Some(("model.layers.0.mlp.down_proj.weight", 3e38)),
        positive_keys: &["/rms_norm_eps", "/rope_parameters/rope_theta"],
        pad_key: Some("/pad_token_id"),
    },
    Arch {
        name: "yoco_gate_retention",
        make: |d| from_fixture("yoco/tests/fixtures/yoco_gate_retention")(d),
        command: "logits",
        arch_flag: Some("yoco"),
        ids: "5,9,2",
        float_tensor: "layer_norm.weight",
        overflow: Some(("self_decoder.layers.0.ffn.fc2.weight", 3e38)),
        positive_keys: &["/norm_eps", "/rope_theta"],
        pad_key: None,
    },
    Arch {
        name: "yoco_sliding_window",
        make: |d| from_fixture("yoco/tests/fixtures/yoco_sliding_window")(d),
        command: "logits",
        arch_flag: Some("yoco"),
        ids: "5,9,2",
        float_tensor: "cross_decoder.k_proj.weight",
        overflow: Some(("self_decoder.layers.0.ffn.fc2.weight", 3e38)),
        positive_keys: &["/norm_eps", "/rope_theta"],
        pad_key: None,
    },
    Arch {
        name: "fastformer",
        make: |d| from_fixture("fastformer/tests/fixtures")(d),
        command: "classify",
        arch_flag: Some("fastformer"),
        ids: "5,9,2,0;7,3,1,4",
        float_tensor: "word_embedding.weight",
        overflow: Some(("fastformer_model.encoders.0.output.dense.weight", 3e38)),
        positive_keys: &["/layer_norm_eps"],
        pad_key: Some("/pad_token_id"),
    },
    Arch {
        name: "smartbird",
        make: smartbird_checkpoint,
        command: "classify",
        arch_flag: Some("smartbird"),
        ids: "5,9,2,0;7,3,1,4",
        float_tensor: "embeddings.word_embeddings.weight",
        overflow: Some(("encoder.layer.0.output.dense.weight", 3e38)),
        positive_keys: &["/layer_norm_eps"],
        pad_key: Some("/pad_token_id"),
    },
];

/// Smart Bird has no reference checkpoint: a random one, saved as the crate saves them.
fn smartbird_checkpoint(dir: &Path) {
    let cfg = smartbird::Config {
        hidden_size: 16,
        num_attention_heads: 2,
        num_hidden_layers: 2,
        intermediate_size: 32,
        max_position_embeddings: 32,
        vocab_size: 50,
        layer_norm_eps: 1e-12,
        num_labels: 3,
        pad_token_id: 0,
        sketch_dim: 4,
        keys_per_query: 3,
        sampling: smartbird::Sampling::TopK,
        seed: 9,
        include_self: true,
    };
    let (_, vars) = smartbird::Model::random(&cfg, &candle_core::Device::Cpu).unwrap();
    smartbird::save(dir, &cfg, &vars).unwrap();
}

/// One bad input: how it corrupts a good checkpoint, the arguments added to the command, and
/// what stderr must say.
struct Case {
    name: String,
    corrupt: Box<dyn Fn(&Path)>,
    args: Vec<String>,
    needles: Vec<String>,
}

fn case(
    name: impl Into<String>,
    corrupt: impl Fn(&Path) + 'static,
    args: &[&str],
    needles: &[&str],
) -> Case {
    Case {
        name: name.into(),
        corrupt: Box::new(corrupt),
        args: args.iter().map(|s| s.to_string()).collect(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

fn index_json(dir: &Path, shard: &str) {
    let index = json!({"metadata": {}, "weight_map": {"a.weight": shard}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// Every class of bad input that applies to `arch`.
fn cases(arch: &Arch) -> Vec<Case> {
    let t = arch.float_tensor;
    let mut cases = vec![
        case(
            "nan_weight",
            move |d| edit_tensor(d, t, |x| with_first(x, f32::NAN)),
            &[],
            &[t, "non-finite value (NaN) at flat index 0"],
        ),
        case(
            "inf_weight",
            move |d| edit_tensor(d, t, |x| with_first(x, f32::NEG_INFINITY)),
            &[],
            &[t, "non-finite value (-inf)"],
        ),
        case(
            "float_weight_as_i64",
            move |d| edit_tensor(d, t, |x| x.to_dtype(DType::I64).unwrap()),
            &[],
            &[t, "stored as I64", "not converted"],
        ),
        case(
            "float_weight_as_u8",
            move |d| edit_tensor(d, t, |x| x.to_dtype(DType::U8).unwrap()),
            &[],
            &[t, "stored as U8"],
        ),
        case(
            "weights_are_a_fifo",
            |d| make_fifo(&d.join("model.safetensors")),
            &[],
            &["model.safetensors", "not a regular file (it is a FIFO)"],
        ),
        case(
            "weights_are_a_directory",
            |d| {
                std::fs::remove_file(d.join("model.safetensors")).unwrap();
                std::fs::create_dir(d.join("model.safetensors")).unwrap();
            },
            &[],
            &["not a regular file (it is a directory)"],
        ),
        case(
            "config_is_a_fifo",
            |d| make_fifo(&d.join("config.json")),
            &[],
            &["config.json", "not a regular file (it is a FIFO)"],
        ),
        case(
            "weights_truncated",
            |d| {
                let p = d.join("model.safetensors");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            },
            &[],
            &["loading"],
        ),
        case(
            "weights_are_noise",
            |d| {
                std::fs::write(d.join("model.safetensors"), [0xffu8; 64]).unwrap();
            },
            &[],
            &["loading"],
        ),
        case(
            "shard_path_with_parent",
            |d| index_json(d, "../model.safetensors"),
            &[],
            &["`../model.safetensors` leaves its directory"],
        ),
        case(
            "shard_path_absolute",
            |d| index_json(d, "/etc/passwd"),
            &[],
            &["`/etc/passwd` leaves its directory"],
        ),
        case(
            "shard_missing",
            |d| index_json(d, "model-00001-of-00002.safetensors"),
            &[],
            &["shard listed in model.safetensors.index.json is missing"],
        ),
        case(
            "token_id_out_of_range",
            |_| {},
            &["--input-ids", "1,100000"],
            &["token id 100000", "out of range"],
        ),
        case(
            "empty_input",
            |_| {},
            &["--input-ids", " "],
            &["--input-ids is empty"],
        ),
    ];
    if let Some((overflow, huge)) = arch.overflow {
        cases.push(case(
            "overflow_to_infinity",
            move |d| edit_tensor(d, overflow, |x| (x.ones_like().unwrap() * huge).unwrap()),
            &[],
            &["non-finite values (NaN or infinity)", "layer 0"],
        ));
    }
    for key in arch.positive_keys {
        let k = key.rsplit('/').next().unwrap().to_string();
        for (label, value) in [("zero", json!(0.0)), ("negative", json!(-1.0))] {
            let key = key.to_string();
            cases.push(case(
                format!("{k}_{label}"),
                move |d| set_config(d, &key, value.clone()),
                &[],
                &[&format!("`{k}`"), "must be"],
            ));
        }
    }
    if let Some(key) = arch.pad_key {
        cases.push(case(
            "pad_token_id_past_vocab",
            move |d| set_config(d, key, json!(1_000_000)),
            &[],
            &["pad_token_id", "not below vocab_size"],
        ));
    }
    if arch.command == "logits" {
        let (limit_2_40, limit_max): (&str, &str) = match arch.name {
            "recurrent_gemma" => ("exact for RoPE in f32", "is too large"),
            "bitnet_packed" | "bitnet_master" => {
                ("past max_position_embeddings 128", "is too large")
            }
            _ => ("max_seq_len 512", "is too large"),
        };
        cases.push(case(
            "max_new_tokens_2_40",
            |_| {},
            &["--max-new-tokens", "1099511627776"],
            &[limit_2_40],
        ));
        cases.push(case(
            "max_new_tokens_u64_max",
            |_| {},
            &["--max-new-tokens", "18446744073709551615"],
            &[limit_max, "prompt + max_new_tokens"],
        ));
    } else {
        cases.push(case(
            "all_padding_row",
            |_| {},
            &["--input-ids", "5,9;0,0"],
            &["sequence 1 is all padding"],
        ));
    }
    match arch.name {
        "recurrent_gemma" => cases.push(case(
            "attention_window_10_12",
            |d| set_config(d, "/attention_window_size", json!(1_000_000_000_000u64)),
            &[],
            &[
                "attention_window_size 1000000000000",
                "is too large",
                "this machine's memory",
            ],
        )),
        "bitnet_packed" => {
            cases.push(case(
                "max_position_embeddings_10_12",
                |d| set_config(d, "/max_position_embeddings", json!(1_000_000_000_000u64)),
                &["--max-new-tokens", "100000000000"],
                &["KV cache", "is too large", "this machine's memory"],
            ));
            cases.push(case(
                "packed_weight_as_f32",
                |d| {
                    edit_tensor(d, "model.layers.0.mlp.up_proj.weight", |x| {
                        x.to_dtype(DType::F32).unwrap()
                    })
                },
                &[],
                &[
                    "model.layers.0.mlp.up_proj.weight",
                    "stored as F32, expected U8",
                ],
            ));
        }
        "yoco_gate_retention" => cases.push(case(
            "max_seq_len_unset_huge_request",
            |d| set_config(d, "/max_seq_len", json!(-1)),
            &["--max-new-tokens", "1099511627776"],
            &["shared KV cache", "is too large"],
        )),
        _ => {}
    }
    cases
}

fn command(arch: &Arch, dir: &Path, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        arch.command.to_string(),
        "--model".into(),
        dir.to_str().unwrap().into(),
    ];
    if let Some(a) = arch.arch_flag {
        args.extend(["--arch".into(), a.into()]);
    }
    if !extra.iter().any(|a| a == "--input-ids") {
        args.extend(["--input-ids".into(), arch.ids.into()]);
    }
    args.extend(extra.iter().cloned());
    args
}

fn check_arch(name: &str) {
    let arch = ARCHS.iter().find(|a| a.name == name).unwrap();
    // The unmodified checkpoint runs: each failure below is the corruption's doing.
    let good = scratch(&format!("{name}/good"));
    (arch.make)(&good);
    let out = run(&command(arch, &good, &[]), &[], DEADLINE);
    assert_eq!(
        out.code,
        Some(0),
        "{name}: the good checkpoint fails: {}",
        out.stderr
    );
    let mut failures = Vec::new();
    for c in cases(arch) {
        let dir = scratch(&format!("{name}/{}", c.name));
        (arch.make)(&dir);
        (c.corrupt)(&dir);
        let out = run(&command(arch, &dir, &c.args), &[], DEADLINE);
        let missing: Vec<&String> = c
            .needles
            .iter()
            .filter(|n| !out.stderr.contains(n.as_str()))
            .collect();
        if out.code != Some(1) || !missing.is_empty() || out.stdout.contains("null") {
            failures.push(format!(
                "{name}/{}: exit {:?}, missing {missing:?}\n  stderr: {}",
                c.name,
                out.code,
                out.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn recurrent_gemma() {
    check_arch("recurrent_gemma");
}

#[test]
fn bitnet_packed() {
    check_arch("bitnet_packed");
}

#[test]
fn bitnet_master() {
    check_arch("bitnet_master");
}

#[test]
fn yoco_gate_retention() {
    check_arch("yoco_gate_retention");
}

#[test]
fn yoco_sliding_window() {
    check_arch("yoco_sliding_window");
}

#[test]
fn fastformer() {
    check_arch("fastformer");
}

#[test]
fn smartbird() {
    check_arch("smartbird");
}

/// Settings of `compare` and `generate` outside their domain, refused before any work.
#[test]
fn command_line_settings() {
    let plot_dir = scratch("cli/plot-dir");
    let mut failures = Vec::new();
    let table: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["compare", "--contexts", "1000000000"],
            "outside 1..=65536",
        ),
        (
            vec!["compare", "--contexts", "1099511627776"],
            "outside 1..=65536",
        ),
        (
            vec!["compare", "--contexts", "18446744073709551615"],
            "outside 1..=65536",
        ),
        (vec!["compare", "--contexts", "0"], "outside 1..=65536"),
        (
            vec!["compare", "--plot", "/nonexistent-dir/frugal.svg"],
            "cannot be written",
        ),
        (
            vec!["compare", "--plot", plot_dir.to_str().unwrap()],
            "is a directory",
        ),
        (
            vec![
                "generate",
                "--model",
                "x",
                "--prompt",
                "a",
                "--temperature",
                "NaN",
            ],
            "temperature NaN: must be",
        ),
        (
            vec![
                "generate",
                "--model",
                "x",
                "--prompt",
                "a",
                "--temperature=-1",
            ],
            "temperature -1: must be",
        ),
        (
            vec![
                "generate",
                "--model",
                "x",
                "--prompt",
                "a",
                "--temperature",
                "inf",
            ],
            "temperature inf: must be",
        ),
        (
            vec!["generate", "--model", "x", "--prompt", "a", "--top-k", "0"],
            "top-k 0 keeps no token",
        ),
        (
            vec!["generate", "--model", "x", "--prompt", "a", "--top-p", "0"],
            "top-p 0: must be",
        ),
        (
            vec![
                "generate", "--model", "x", "--prompt", "a", "--top-p", "1.5",
            ],
            "top-p 1.5: must be",
        ),
    ]
    .into_iter()
    .map(|(a, n)| (a.into_iter().map(String::from).collect(), n))
    .collect();
    for (args, needle) in table {
        let start = std::time::Instant::now();
        let out = run(&args, &[], DEADLINE);
        // Refused up front: no measurement ran (compare prints its size line first).
        let early = !out.stderr.contains("frugal compare: size")
            && start.elapsed() < Duration::from_secs(10);
        if out.code != Some(1) || !out.stderr.contains(needle) || !early {
            failures.push(format!(
                "{}: exit {:?}, stderr: {}",
                args.join(" "),
                out.code,
                out.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Hugging Face cache whose `refs/main` points outside the cache is refused, not followed.
#[test]
fn hf_cache_refs_stay_inside_the_cache() {
    let cache = scratch("cli/hf-cache");
    let repo = cache.join("models--evil--escape");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    let outside = scratch("cli/hf-outside");
    copy_checkpoint(&fixture("bitnet/tests/fixtures/bitnet_packed"), &outside);
    let rel = format!(
        "../../../{}",
        outside.file_name().unwrap().to_str().unwrap()
    );
    std::fs::write(repo.join("refs/main"), &rel).unwrap();
    std::fs::create_dir_all(repo.join("snapshots")).unwrap();
    let args: Vec<String> = ["generate", "--model", "evil/escape", "--prompt", "hi"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run(
        &args,
        &[("HF_HUB_CACHE", cache.to_str().unwrap())],
        DEADLINE,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("refs/main") && out.stderr.contains("leaves its directory"),
        "{}",
        out.stderr
    );
}

/// `generate` with a token budget past the model's context generates up to the context, with a
/// note, instead of sizing a cache from the request.
#[test]
fn generate_caps_huge_token_budgets_at_the_context() {
    for (rel, arch, limit) in [
        (
            "bitnet/tests/fixtures/bitnet_packed",
            None,
            "max_position_embeddings",
        ),
        (
            "yoco/tests/fixtures/yoco_gate_retention",
            Some("yoco"),
            "max_seq_len",
        ),
    ] {
        let dir = scratch(&format!("cli/generate-{limit}"));
        copy_checkpoint(&fixture(rel), &dir);
        std::fs::write(dir.join("tokenizer.json"), crate::cli::word_tokenizer(256)).unwrap();
        let mut args: Vec<String> = [
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "t5 t9",
            "--max-tokens",
            "1099511627776",
            "--temperature",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(a) = arch {
            args.extend(["--arch".into(), a.into()]);
        }
        let out = run(&args, &[], DEADLINE);
        assert_eq!(out.code, Some(0), "{rel}: {}", out.stderr);
        assert!(
            out.stderr.contains(limit) && out.stderr.contains("generating at most"),
            "{}",
            out.stderr
        );
    }
}
