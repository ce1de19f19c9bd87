//! `cargo xtask gpu-bundle`: one folder that checks frugal on a GPU host with no Rust toolchain
//! and no network, built here with no GPU, no driver and no CUDA libraries.
//!
//! Everything is the `cuda` build (candle's CUDA backend, the kernels' `cuda_fwd`; one cudarc,
//! linked dynamically): `frugal`, the kernels' GPU tests and the GPU benchmark, compiled with the
//! pinned nvcc 13.0 (`cargo xtask setup-cuda`) and linked against stubs of the driver and the CUDA
//! libraries (`stubs.rs`). `run.sh` finds the real ones on the host (the driver, and PyPI's
//! nvidia-* CUDA 13 packages in its Python's site-packages) and runs every check into `run.log`.
//!
//! `cargo xtask test-gpu` and `bench-gpu` run the same tests and benchmark with cargo on a machine
//! that has a GPU and a Rust toolchain.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cuda;

const BUNDLE: &str = "gpu-bundle";
const TESTS: &[&str] = &["test", "-p", "kernels", "--test", "gpu"];
const BENCH: &[&str] = &["bench", "-p", "frugal-benches", "--bench", "gpu"];
/// The bundle's size limit: it is copied to the GPU host.
const MAX_BYTES: u64 = 60 << 20;
/// `(fixture as the bundle names it, its folder in the workspace)`: what `check.py` runs.
const FIXTURES: &[(&str, &str)] = &[
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
];

pub fn test(root: &Path) -> Result<()> {
    run(
        root,
        TESTS,
        &["--release"],
        &["--", "--nocapture"],
        "GPU tests failed (or no GPU was found)",
    )
}

pub fn bench(root: &Path) -> Result<()> {
    run(
        root,
        BENCH,
        &[],
        &[],
        "the GPU benchmark failed (or no GPU was found)",
    )
}

fn run(root: &Path, cmd: &[&str], pre: &[&str], post: &[&str], failure: &str) -> Result<()> {
    // FRUGAL_REQUIRE_GPU turns "SKIPPED: no CUDA device" into a failure.
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .env("FRUGAL_REQUIRE_GPU", "1")
        .args(cmd)
        .args(pre)
        .args(post)
        .status()?;
    if !status.success() {
        bail!("{failure}");
    }
    Ok(())
}

/// Builds the bundle into `gpu-bundle/`.
pub fn bundle(root: &Path) -> Result<()> {
    let tools = cuda::Toolchain::find(root)?;
    let link = cuda::install_dir(root).join("link");
    crate::stubs::write(root, &link, &tools.cuda13)?;
    let env = cuda::build_env(&tools, Some(&link))?;
    let out = root.join(BUNDLE);
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let bin = out.join("bin");
    std::fs::create_dir_all(&bin)?;
    let cuda_build = ["--no-default-features", "--features", "cuda"];
    for (cmd, kind, name, as_name) in [
        (&["build", "-p", "frugal"][..], "bin", "frugal", "frugal"),
        (TESTS, "test", "gpu", "gpu-tests"),
        (BENCH, "bench", "gpu", "bench-gpu"),
    ] {
        eprintln!("gpu-bundle: cargo {} (the `cuda` build)", cmd.join(" "));
        let exe = build(root, &env, cmd, &cuda_build, kind, name)?;
        std::fs::copy(&exe, bin.join(as_name))
            .with_context(|| format!("copying {}", exe.display()))?;
    }
    for (name, dir) in FIXTURES {
        let to = out.join("fixtures").join(name);
        std::fs::create_dir_all(&to)?;
        for file in [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "golden.json",
        ] {
            let from = root.join(dir).join(file);
            if from.exists() {
                std::fs::copy(&from, to.join(file))?;
            }
        }
    }
    let assets = root.join("xtask/bundle");
    for file in ["run.sh", "check.py"] {
        std::fs::copy(assets.join(file), out.join(file))?;
    }
    let bytes = folder_bytes(&out)?;
    eprintln!(
        "gpu-bundle: {} ready, {:.1} MiB: copy it to a GPU host and run ./run.sh there",
        out.display(),
        bytes as f64 / (1 << 20) as f64
    );
    if bytes > MAX_BYTES {
        bail!(
            "the bundle is {:.1} MiB, over its limit of {} MiB",
            bytes as f64 / (1 << 20) as f64,
            MAX_BYTES >> 20
        );
    }
    Ok(())
}

/// Builds `cmd` (plus `extra`) under the stripped `gpu-bundle` profile in the `cuda` target dir;
/// the executable of the target of `kind` named `name`.
fn build(
    root: &Path,
    env: &[(String, String)],
    cmd: &[&str],
    extra: &[&str],
    kind: &str,
    name: &str,
) -> Result<PathBuf> {
    let mut c = Command::new(env!("CARGO"));
    c.current_dir(root)
        .envs(env.iter().cloned())
        .args(cmd)
        .args(extra)
        .args(["--profile", "gpu-bundle", "--target-dir"])
        .arg(cuda::target_dir(root))
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit());
    if cmd[0] != "build" {
        c.arg("--no-run");
    }
    let out = c.output()?;
    if !out.status.success() {
        bail!("building {} failed", cmd.join(" "));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == name
            && kinds.iter().any(|k| k == kind)
        {
            if let Some(exe) = msg["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("{} built no {kind} `{name}`", cmd.join(" "))
}

fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
