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
