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
    // One cargo call for all three, so that they share one feature resolution and candle's CUDA
    // kernels compile once (about 8 minutes on two cores).
    eprintln!("gpu-bundle: frugal, the GPU tests and the GPU bench (the `cuda` build)");
    let built = build(root, &env)?;
    for (kind, name, as_name) in [
        ("bin", "frugal", "frugal"),
        ("test", "gpu", "gpu-tests"),
        ("bench", "gpu", "bench-gpu"),
    ] {
        let exe = built
            .iter()
            .find(|(k, n, _)| k == kind && n == name)
            .map(|(_, _, exe)| exe)
            .with_context(|| format!("the build made no {kind} `{name}`"))?;
        compress(exe, &bin.join(format!("{as_name}.xz")))?;
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

/// Builds `frugal`, the kernels' GPU tests and the GPU bench in the `cuda` build, under the
/// stripped `gpu-bundle` profile in the `cuda` target dir; `(kind, target name, executable)` of
/// everything built.
fn build(root: &Path, env: &[(String, String)]) -> Result<Vec<(String, String, PathBuf)>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .envs(env.iter().cloned())
        .args([
            "build",
            "-p",
            "frugal",
            "-p",
            "kernels",
            "-p",
            "frugal-benches",
        ])
        .args(["--bin", "frugal", "--test", "gpu", "--bench", "gpu"])
        .args(["--no-default-features", "--features", "cuda"])
        .args(["--profile", "gpu-bundle", "--target-dir"])
        .arg(cuda::target_dir(root))
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("the `cuda` build failed");
    }
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let (Some(exe), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str())
        else {
            continue;
        };
        for kind in msg["target"]["kind"].as_array().into_iter().flatten() {
            if let Some(kind) = kind.as_str() {
                built.push((kind.to_string(), name.to_string(), PathBuf::from(exe)));
            }
        }
    }
    Ok(built)
}

/// `exe` into `to`, xz-compressed: each binary embeds candle's PTX for every op (text that
/// compresses about eightfold), which puts three of them past the bundle's size limit. `run.sh`
/// unpacks them on the host (with `xz`, or Python's `lzma`).
fn compress(exe: &Path, to: &Path) -> Result<()> {
    let out = std::fs::File::create(to)?;
    let status = Command::new("xz")
        .args(["-9", "-T0", "-c"])
        .arg(exe)
        .stdout(out)
        .status()
        .context("running xz (apt-get install xz-utils)")?;
    if !status.success() {
        bail!("compressing {} failed", exe.display());
    }
    Ok(())
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
