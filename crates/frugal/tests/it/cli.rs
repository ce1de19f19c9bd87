//! The `frugal` binary end to end.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use std::process::Command;

fn frugal(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .expect("run frugal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_lists_cpu_gpu_and_kernels() {
    let (ok, out, err) = frugal(&["info"]);
    assert!(ok, "{err}");
    assert!(out.contains("CPU: "), "{out}");
    assert!(out.contains("GPU: "), "{out}");
    for k in [
        "linear_scan_chunk_summary_f32",
        "linear_scan_chunk_carry",
        "linear_scan_chunk_apply_bf16",
    ] {
        assert!(out.contains(k), "{k} missing from: {out}");
    }
    assert!(out.contains("PTX ISA 8.4"), "{out}");
}

/// Runs frugal with `args`: it must fail, and its stderr must contain every one of `messages`.
fn refused(args: &[&str], messages: &[&str]) {
    let (ok, _, err) = frugal(args);
    assert!(!ok, "{args:?} succeeded");
    for m in messages {
        assert!(err.contains(m), "{args:?}: `{m}` missing from: {err}");
    }
}

#[test]
fn logits_errors_are_clear_and_nonzero() {
    let dir = std::env::temp_dir().join(format!("frugal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    refused(
        &["logits", "--model", d, "--input-ids", "1,2"],
        &["config.json", "--arch"],
    );
    refused(
        &[
            "logits",
            "--model",
            d,
            "--input-ids",
            "1,x",
            "--arch",
            "yoco",
        ],
        &["`x` is not a token id"],
    );
    refused(
        &["logits", "--model", d, "--input-ids", " ", "--arch", "yoco"],
        &["--input-ids is empty"],
    );
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    refused(
        &["logits", "--model", d, "--input-ids", "1"],
        &["unknown architecture `llama`"],
    );
    refused(
        &[
            "classify",
            "--model",
            d,
            "--input-ids",
            "1,2;3",
            "--arch",
            "fastformer",
        ],
        &["one length"],
    );
    refused(
        &[
            "logits",
            "--model",
            "/nonexistent/frugal",
            "--input-ids",
            "1",
        ],
        &["no such directory"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logits_of_the_recurrent_gemma_fixture_match_the_reference() {
    check_decoder_fixture(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../griffin/tests/fixtures"
    ));
}

#[test]
fn logits_of_the_bitnet_fixtures_match_the_reference() {
    for name in ["bitnet_packed", "bitnet_master"] {
        check_decoder_fixture(&format!(
            "{}/../bitnet/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ));
    }
}

#[test]
fn logits_of_the_yoco_fixtures_match_the_reference() {
    for name in ["yoco_gate_retention", "yoco_sliding_window"] {
        let dir = format!(
            "{}/../yoco/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/golden.json")).unwrap())
                .unwrap();
        let ids: Vec<String> = golden["input_ids"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let (ok, out, err) = frugal(&[
            "logits",
            "--model",
            &dir,
            "--arch",
            "yoco",
            "--input-ids",
            &ids.join(","),
            "--max-new-tokens",
            "10",
        ]);
        assert!(ok, "{err}");
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["logits_shape"], golden["logits_shape"]);
        assert_eq!(
            got["new_tokens"], golden["generate"]["new_tokens"],
            "{name}"
        );
        let d = got["logits"]
            .as_array()
            .unwrap()
            .iter()
            .zip(golden["logits"].as_array().unwrap())
            .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-4, "{name}: max |logits - reference| = {d}");
    }
}

/// `frugal logits` on a decoder fixture: the prompt's logits and 16 greedy tokens.
fn check_decoder_fixture(dir: &str) {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/golden.json")).unwrap())
            .unwrap();
    let ids: Vec<String> = golden["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let (ok, out, err) = frugal(&[
        "logits",
        "--model",
        dir,
        "--input-ids",
        &ids.join(","),
        "--max-new-tokens",
        "16",
    ]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["logits_shape"], golden["logits_shape"]);
    assert_eq!(got["new_tokens"], golden["generate"]["new_tokens"]);
    let (a, b) = (
        got["logits"].as_array().unwrap(),
        golden["logits"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-4, "{dir}: max |logits - reference| = {d}");
}

#[test]
fn classify_with_the_fastformer_fixture_matches_the_reference() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fastformer/tests/fixtures");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/golden.json")).unwrap())
            .unwrap();
    let rows: Vec<String> = golden["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let (ok, out, err) = frugal(&[
        "classify",
        "--model",
        dir,
        "--arch",
        "fastformer",
        "--input-ids",
        &rows.join(";"),
    ]);
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["logits_shape"], golden["logits_shape"]);
    let (a, b) = (
        got["logits"].as_array().unwrap(),
        golden["logits"].as_array().unwrap(),
    );
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert_eq!(a.len(), b.len());
    assert!(d < 1e-4, "max |logits - reference| = {d}");
}

#[test]
fn classify_with_a_saved_smartbird_model_matches_the_library() {
    let cfg = smartbird::Config {
        hidden_size: 16,
        num_attention_heads: 2,
        num_hidden_layers: 1,
        intermediate_size: 32,
        max_position_embeddings: 32,
        vocab_size: 50,
        layer_norm_eps: 1e-12,
        num_labels: 3,
        pad_token_id: 0,
        sketch_dim: 4,
        keys_per_query: 3,
        sampling: smartbird::Sampling::Gumbel,
        seed: 9,
        include_self: true,
    };
    let device = candle_core::Device::Cpu;
    let (model, vars) = smartbird::Model::random(&cfg, &device).unwrap();
    let dir = std::env::temp_dir().join(format!("frugal-smartbird-{}", std::process::id()));
    smartbird::save(&dir, &cfg, &vars).unwrap();
    let ids = vec![vec![5, 9, 2, 7, 3, 1], vec![4, 8, 6, 0, 0, 0]];
    let want: Vec<f32> = model
        .forward(&ids)
        .unwrap()
        .logits
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (ok, out, err) = frugal(&[
        "classify",
        "--model",
        dir.to_str().unwrap(),
        "--arch",
        "smartbird",
        "--input-ids",
        "5,9,2,7,3,1;4,8,6,0,0,0",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["logits_shape"], serde_json::json!([2, 3]));
    let got: Vec<f32> = got["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, want);
}

/// A word-level tokenizer whose token `i` is the word `t{i}`: prompts and generated text are then
/// the fixtures' token ids, readable.
pub(crate) fn word_tokenizer(vocab: usize) -> String {
    let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "t0"}
    })
    .to_string()
}

/// Copies a fixture checkpoint and adds the word tokenizer.
fn checkpoint_with_tokenizer(fixture: &str, dest: &std::path::Path) {
    std::fs::create_dir_all(dest).unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        let src = std::path::Path::new(fixture).join(f);
        if src.exists() {
            std::fs::copy(&src, dest.join(f)).unwrap();
        }
    }
    std::fs::write(dest.join("tokenizer.json"), word_tokenizer(256)).unwrap();
}

fn words(ids: &[serde_json::Value]) -> String {
    ids.iter()
        .map(|v| format!("t{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn generate_streams_the_reference_tokens_from_each_decoder() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = std::env::temp_dir().join(format!("frugal-generate-{}", std::process::id()));
    for (fixture, arch, n) in [
        (format!("{root}/../griffin/tests/fixtures"), None, 16),
        (
            format!("{root}/../bitnet/tests/fixtures/bitnet_packed"),
            None,
            16,
        ),
        (
            format!("{root}/../yoco/tests/fixtures/yoco_sliding_window"),
            Some("yoco"),
            10,
        ),
    ] {
        let dir = tmp.join(fixture.rsplit('/').next().unwrap());
        checkpoint_with_tokenizer(&fixture, &dir);
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixture}/golden.json")).unwrap(),
        )
        .unwrap();
        let prompt = words(golden["input_ids"][0].as_array().unwrap());
        let mut want: Vec<serde_json::Value> =
            golden["generate"]["new_tokens"].as_array().unwrap().clone();
        // Generation stops at the checkpoint's EOS (RecurrentGemma's is 1, BitNet's 2).
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixture}/config.json")).unwrap(),
        )
        .unwrap();
        if let Some(eos) = config["eos_token_id"].as_u64() {
            if let Some(at) = want.iter().position(|v| v.as_u64() == Some(eos)) {
                want.truncate(at);
            }
        }
        let n = n.to_string();
        let mut args = vec![
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            &prompt,
            "--max-tokens",
            &n,
            "--temperature",
            "0",
        ];
        if let Some(a) = arch {
            args.extend(["--arch", a]);
        }
        let (ok, out, err) = frugal(&args);
        assert!(ok, "{fixture}: {err}");
        assert_eq!(out.trim(), words(&want), "{fixture}: greedy text");
        assert!(err.contains("tokens/s"), "{err}");
        // Sampling: seeded, so reproducible; other seeds give other text.
        let sample = |seed: &str| {
            let mut a = args.clone();
            a.truncate(a.len() - if arch.is_some() { 4 } else { 2 });
            a.extend([
                "--temperature",
                "1.5",
                "--top-k",
                "50",
                "--top-p",
                "0.95",
                "--seed",
                seed,
            ]);
            if let Some(x) = arch {
                a.extend(["--arch", x]);
            }
            let (ok, out, err) = frugal(&a);
            assert!(ok, "{err}");
            out
        };
        assert_eq!(sample("1"), sample("1"));
        assert_ne!(sample("1"), sample("2"));
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn generate_finds_repo_ids_in_the_hf_cache_and_says_where_it_looked() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cache = std::env::temp_dir().join(format!("frugal-hf-{}", std::process::id()));
    let repo = cache.join("models--test-org--tiny-bitnet");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    checkpoint_with_tokenizer(
        &format!("{root}/../bitnet/tests/fixtures/bitnet_packed"),
        &repo.join("snapshots/abc123"),
    );
    let run = |model: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args([
                "generate",
                "--model",
                model,
                "--prompt",
                "t1 t182 t234",
                "--max-tokens",
                "3",
                "--temperature",
                "0",
            ])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run("test-org/tiny-bitnet");
    assert!(ok, "{err}");
    let (ok, err) = run("nobody/missing");
    assert!(!ok);
    assert!(
        err.contains("models--nobody--missing") && err.contains(cache.to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains("Offline") && err.contains("huggingface-cli download nobody/missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

/// A repo id missing from the cache is downloaded from the hub; a hub that cannot be reached (here
/// a closed local port as `HF_ENDPOINT`) is a clear error, and `--offline` never tries.
#[test]
fn repo_ids_missing_from_the_cache_are_downloaded_or_the_hub_error_is_clear() {
    let cache = std::env::temp_dir().join(format!("frugal-hf-empty-{}", std::process::id()));
    std::fs::create_dir_all(&cache).unwrap();
    for (extra, needle) in [
        (
            None,
            "cannot download config.json of some-org/some-model from the Hugging Face hub (http://127.0.0.1:9)",
        ),
        (Some("--offline"), "Offline (HF_HUB_OFFLINE or --offline)"),
    ] {
        for command in [
            vec!["generate", "--model", "some-org/some-model", "--prompt", "hi"],
            vec!["logits", "--model", "some-org/some-model", "--input-ids", "1"],
        ] {
            let mut args = command.clone();
            args.extend(extra);
            let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
                .args(&args)
                .env("HF_HUB_CACHE", &cache)
                .env("HF_ENDPOINT", "http://127.0.0.1:9")
                .env_remove("HF_HUB_OFFLINE")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(needle), "{args:?}: {err}");
            if extra.is_none() {
                assert!(err.contains("HF_HUB_OFFLINE=1"), "{err}");
            }
        }
    }
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn compare_measures_every_architecture_and_writes_the_plot() {
    let plot = std::env::temp_dir().join(format!("frugal-compare-{}.svg", std::process::id()));
    let (ok, out, err) = frugal(&[
        "compare",
        "--size",
        "tiny",
        "--contexts",
        "32,64",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("64/") || err.contains("done"),
        "progress on stderr: {err}"
    );
    let records: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(records.len(), 8 * 2);
    let get = |arch: &str, t: u64, key: &str| {
        records
            .iter()
            .find(|r| r["arch"] == arch && r["context"] == t)
            .unwrap_or_else(|| panic!("{arch} at {t} missing"))[key]
            .clone()
    };
    for r in &records {
        assert!(r["prefill_tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["weight_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    // Encoders keep no cache and do not decode.
    assert!(get("fastformer", 64, "cache_bytes").is_null());
    assert!(get("smartbird", 64, "decode_tokens_per_s").is_null());
    // The claims the comparison exists to show, in the real objects' bytes.
    let bytes = |a: &str, t: u64| get(a, t, "cache_bytes").as_u64().unwrap();
    assert!(bytes("yoco-gret", 64) < bytes("transformer", 64));
    assert_eq!(
        bytes("hawk", 32),
        bytes("hawk", 64),
        "Hawk's state does not grow"
    );
    assert!(bytes("transformer", 32) < bytes("transformer", 64));
    assert!(
        get("bitnet", 32, "weight_bytes").as_u64().unwrap()
            < get("transformer", 32, "weight_bytes").as_u64().unwrap()
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("yoco-gret") && svg.contains("decode"));
    // Read as a person expects: the baseline named as such, rates and bytes in human units,
    // ticks at the measured contexts, and a title with size, device, dtype and threads.
    for needle in [
        "transformer (baseline)",
        "tok/s",
        " KB\n",
        "\n32\n",
        "\n64\n",
        "tiny size",
        "CPU, f32",
        "threads",
    ] {
        assert!(svg.contains(needle), "{needle} missing from the plot");
    }
    assert!(
        !svg.contains("e+") && !svg.contains("0000000"),
        "raw numbers in the plot"
    );
    std::fs::remove_file(&plot).unwrap();
    for (args, needle) in [
        (vec!["compare", "--size", "huge"], "invalid value 'huge'"),
        (vec!["compare", "--archs", "gpt2"], "invalid value 'gpt2'"),
        (vec!["compare", "--device", "cuda"], "--features cuda"),
        (vec!["compare", "--device", "tpu"], "`tpu` is not a device"),
        (vec!["compare", "--contexts", "12,x"], "`x` is not a length"),
    ] {
        let (ok, _, err) = frugal(&args);
        assert!(!ok && err.contains(needle), "{args:?}: {err}");
    }
}

/// `--weights bf16` ships the random checkpoint in bf16 (half the bytes, the same model),
/// `--layers` overrides the size's, `--no-baseline` measures only the architectures asked for.
#[test]
fn compare_takes_the_weights_dtype_layers_and_no_baseline() {
    let plot = std::env::temp_dir().join(format!("frugal-compare-w-{}.svg", std::process::id()));
    // `frugal compare --size tiny --archs ARCH --no-baseline --contexts 16 EXTRA`'s records.
    let compare = |arch: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "compare",
            "--size",
            "tiny",
            "--archs",
            arch,
            "--no-baseline",
        ];
        args.extend([
            "--contexts",
            "16",
            "--json",
            "--plot",
            plot.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        let (ok, out, err) = frugal(&args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let run =
        |weights: &str, layers: &str| compare("hawk", &["--weights", weights, "--layers", layers]);
    let (f32s, bf16s, one_layer) = (run("f32", "2"), run("bf16", "2"), run("f32", "1"));
    for records in [&f32s, &bf16s, &one_layer] {
        assert_eq!(records.len(), 1, "only hawk: {records:?}");
        assert_eq!(records[0]["arch"], "hawk");
        assert!(records[0]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    let bytes = |r: &[serde_json::Value]| r[0]["weight_bytes"].as_u64().unwrap();
    assert_eq!(
        (f32s[0]["weights"].clone(), bf16s[0]["weights"].clone()),
        ("f32".into(), "bf16".into())
    );
    assert_eq!(bytes(&f32s), 2 * bytes(&bf16s));
    assert!(bytes(&one_layer) < bytes(&f32s));
    // BitNet's opt-in 4-bit head: a copy of the output embedding at 4.5 bits a weight.
    let bitnet = |extra: &[&str]| -> u64 {
        let r = compare("bitnet", extra);
        assert!(r[0]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
        r[0]["weight_bytes"].as_u64().unwrap()
    };
    // tiny: vocabulary 2048, hidden 128.
    assert_eq!(
        bitnet(&["--quantized-head"]) - bitnet(&[]),
        2048 * 128 / 2 + 2048 * 128 / 32 * 2
    );
    // bf16 weights hold the (tied) embedding in the lossless 12-bit form by default: 1.5 bytes
    // a weight, a 16-byte table and a row start per row, 8 bytes per exception (rare: below 1%
    // of the weights here), where `--plain-head` holds 2 bytes a weight. f32 weights (not bf16
    // values) keep the f32 table either way.
    let plain = bitnet(&["--weights", "bf16", "--plain-head"]);
    let compact = bitnet(&["--weights", "bf16"]) - (plain - 2 * 2048 * 128);
    let least = 2048 * 128 * 3 / 2 + 2048 * 16 + 8 * 2049;
    assert!(
        compact >= least && compact < least + 8 * 2048 * 128 / 100,
        "{compact} bytes"
    );
    assert_eq!(bitnet(&["--plain-head"]), bitnet(&[]));
    // The plain head excludes the 4-bit one.
    let (ok, _, err) = frugal(&[
        "compare",
        "--size",
        "tiny",
        "--archs",
        "bitnet",
        "--no-baseline",
        "--contexts",
        "16",
        "--plot",
        plot.to_str().unwrap(),
        "--plain-head",
        "--quantized-head",
        "--weights",
        "bf16",
    ]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    // The baseline's KV cache in f16: half the bytes.
    let baseline_cache = |kv: &str| -> u64 {
        let (ok, out, err) = frugal(&[
            "compare",
            "--size",
            "tiny",
            "--archs",
            "transformer",
            "--contexts",
            "16",
            "--json",
            "--plot",
            plot.to_str().unwrap(),
            "--kv-cache",
            kv,
        ]);
        assert!(ok, "{err}");
        let records: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(records[0]["arch"], "transformer");
        assert!(
            kv == "f32" || err.contains(&format!("baseline KV cache {kv}")),
            "{err}"
        );
        records[0]["cache_bytes"].as_u64().unwrap()
    };
    assert_eq!(baseline_cache("f32"), 2 * baseline_cache("f16"));
    std::fs::remove_file(&plot).unwrap();
    for (args, needle) in [
        (vec!["compare", "--layers", "0"], "--layers: 0 is outside"),
        (
            vec!["compare", "--archs", "transformer", "--no-baseline"],
            "leaves nothing to measure",
        ),
        (vec!["compare", "--weights", "f8"], "invalid value 'f8'"),
        (vec!["compare", "--kv-cache", "u8"], "invalid value 'u8'"),
    ] {
        let (ok, _, err) = frugal(&args);
        assert!(!ok && err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn choices_are_listed_and_checked_by_the_parser() {
    let (ok, out, _) = frugal(&["compare", "--help"]);
    assert!(ok);
    for choice in [
        "tiny",
        "small",
        "base",
        "yoco-gret",
        "yoco-swa",
        "hawk",
        "smartbird",
        "cuda",
    ] {
        assert!(out.contains(choice), "{choice} missing from: {out}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(["compare", "--size", "huge"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[possible values: tiny, small, base, 2b4t]"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(["compare", "--archs", "griffin,llama"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value 'llama'"), "{err}");
    let (ok, _, err) = frugal(&[
        "logits",
        "--model",
        ".",
        "--input-ids",
        "1",
        "--arch",
        "fastformer",
    ]);
    assert!(!ok && err.contains("use `frugal classify`"), "{err}");
    let (ok, _, err) = frugal(&[
        "logits",
        "--model",
        ".",
        "--input-ids",
        "1",
        "--device",
        "cuda",
    ]);
    assert!(!ok && err.contains("--device cuda:0"), "{err}");
}

/// `--dtype bf16` runs Griffin and BitNet in bf16. bf16 keeps 8 significant bits, so every
/// activation is rounded by up to 2^-9 relative, and over the fixtures' layers (whose
/// initialisation is deliberately sharp) the logits move by 4–6% of the largest one: they must
/// stay within 10% of it, and differ from the f32 logits (bf16 really ran).
#[test]
fn bf16_logits_stay_near_the_f32_reference() {
    let root = env!("CARGO_MANIFEST_DIR");
    for fixture in [
        format!("{root}/../griffin/tests/fixtures"),
        format!("{root}/../bitnet/tests/fixtures/bitnet_packed"),
    ] {
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixture}/golden.json")).unwrap(),
        )
        .unwrap();
        let ids: Vec<String> = golden["input_ids"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let (ok, out, err) = frugal(&[
            "logits",
            "--model",
            &fixture,
            "--input-ids",
            &ids.join(","),
            "--dtype",
            "bf16",
        ]);
        assert!(ok, "{fixture}: {err}");
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want: Vec<f64> = golden["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got: Vec<f64> = got["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(
            diff <= 0.1 * scale,
            "{fixture}: bf16 off by {diff} (max |logit| {scale})"
        );
        assert!(
            diff > 1e-3,
            "{fixture}: bf16 logits equal f32's: was bf16 used?"
        );
    }
    let (ok, _, err) = frugal(&[
        "logits",
        "--model",
        &format!("{root}/../yoco/tests/fixtures/yoco_gate_retention"),
        "--arch",
        "yoco",
        "--input-ids",
        "1,2",
        "--dtype",
        "bf16",
    ]);
    assert!(!ok && err.contains("yoco runs in f32 only"), "{err}");
}

/// `generate --json`: one object for scripts, with the greedy tokens the reference makes and the
/// load, prompt and decode figures apart.
#[test]
fn generate_json_reports_tokens_and_rates_apart() {
    let root = env!("CARGO_MANIFEST_DIR");
    let fixture = format!("{root}/../bitnet/tests/fixtures/bitnet_packed");
    let dir = std::env::temp_dir().join(format!("frugal-generate-json-{}", std::process::id()));
    checkpoint_with_tokenizer(&fixture, &dir);
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixture}/golden.json")).unwrap())
            .unwrap();
    let prompt = words(golden["input_ids"][0].as_array().unwrap());
    let (ok, out, err) = frugal(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        &prompt,
        "--max-tokens",
        "3",
        "--temperature",
        "0",
        "--json",
    ]);
    assert!(ok, "{err}");
    let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want = &golden["generate"]["new_tokens"].as_array().unwrap()[..3];
    assert_eq!(record["tokens"].as_array().unwrap().as_slice(), want);
    assert_eq!(record["text"].as_str().unwrap(), words(want));
    assert_eq!(record["generated_tokens"], 3);
    // The first token comes from the prompt's logits: two decode steps are timed.
    assert_eq!(record["decode_steps"], 2);
    assert_eq!(
        record["prompt_tokens"].as_u64().unwrap() as usize,
        golden["input_ids"][0].as_array().unwrap().len()
    );
    for key in ["load_secs", "prompt_tokens_per_s", "decode_tokens_per_s"] {
        assert!(record[key].as_f64().unwrap() > 0.0, "{key}: {record}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The GPU bundle's fixture checker (`xtask/bundle/check.py`, which `run.sh` runs on a GPU host)
/// passes on this machine's CPU with this build, so a failure there is the GPU's, not the
/// checker's. Skipped, visibly, without python3.
#[test]
fn the_gpu_bundles_fixture_checker_passes_on_the_cpu() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no python3 to run xtask/bundle/check.py");
        return;
    }
    // The bundle's layout: one folder per fixture, under the names check.py uses.
    let dir = std::env::temp_dir().join(format!("frugal-check-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, from) in [
        ("griffin", "crates/griffin/tests/fixtures"),
        (
            "bitnet_packed",
            "crates/bitnet/tests/fixtures/bitnet_packed",
        ),
        (
            "bitnet_master",
            "crates/bitnet/tests/fixtures/bitnet_master",
        ),
        (
            "yoco_gate_retention",
            "crates/yoco/tests/fixtures/yoco_gate_retention",
        ),
        (
            "yoco_sliding_window",
            "crates/yoco/tests/fixtures/yoco_sliding_window",
        ),
        ("fastformer", "crates/fastformer/tests/fixtures"),
    ] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("{root}/{from}"), &link).unwrap();
    }
    let out = Command::new("python3")
        .arg(format!("{root}/xtask/bundle/check.py"))
        .arg(env!("CARGO_BIN_EXE_frugal"))
        .arg(&dir)
        .arg("cpu")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("ok   ").count(), 8, "{text}");
}

/// `run.sh` of the GPU bundle stops at once where there is no driver, saying so (the bundle's
/// binaries are not needed for that). Skipped, visibly, on a machine with an NVIDIA driver.
#[test]
fn the_gpu_bundles_run_script_says_no_cuda_device_without_a_driver() {
    let has_driver = Command::new("sh")
        .args(["-c", "ldconfig -p 2>/dev/null | grep -q 'libcuda\\.so\\.1'"])
        .status()
        .is_ok_and(|s| s.success());
    if has_driver {
        eprintln!("SKIPPED: this machine has an NVIDIA driver; run.sh would run the GPU checks");
        return;
    }
    let dir = std::env::temp_dir().join(format!("frugal-run-sh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("run.sh");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../xtask/bundle/run.sh"),
        &script,
    )
    .unwrap();
    let out = Command::new("bash").arg(&script).output().unwrap();
    // run.sh tees into run.log: the tee may finish a moment after the script.
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        if log.contains("no CUDA device") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no CUDA device"), "{text}");
    assert!(log.contains("no CUDA device"), "run.log: {log}");
}
