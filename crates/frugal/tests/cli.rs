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

#[test]
fn logits_errors_are_clear_and_nonzero() {
    let dir = std::env::temp_dir().join(format!("frugal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let (ok, _, err) = frugal(&["logits", "--model", d, "--input-ids", "1,2"]);
    assert!(!ok);
    assert!(
        err.contains("config.json") && err.contains("--arch"),
        "{err}"
    );
    let (ok, _, err) = frugal(&[
        "logits",
        "--model",
        d,
        "--input-ids",
        "1,x",
        "--arch",
        "yoco",
    ]);
    assert!(!ok);
    assert!(err.contains("`x` is not a token id"), "{err}");
    let (ok, _, err) = frugal(&["logits", "--model", d, "--input-ids", " ", "--arch", "yoco"]);
    assert!(!ok);
    assert!(err.contains("--input-ids is empty"), "{err}");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let (ok, _, err) = frugal(&["logits", "--model", d, "--input-ids", "1"]);
    assert!(!ok);
    assert!(err.contains("unknown architecture `llama`"), "{err}");
    let (ok, _, err) = frugal(&[
        "classify",
        "--model",
        d,
        "--input-ids",
        "1,2;3",
        "--arch",
        "fastformer",
    ]);
    assert!(!ok);
    assert!(err.contains("one length"), "{err}");
    let (ok, _, err) = frugal(&[
        "logits",
        "--model",
        "/nonexistent/frugal",
        "--input-ids",
        "1",
    ]);
    assert!(!ok);
    assert!(err.contains("no such directory"), "{err}");
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
