//! `cargo xtask test-gpu`: the GPU tests (`kernels/tests/gpu_*.rs`).
//!
//! They launch the embedded PTX on raw cudarc buffers, loading libcuda at run time, so their
//! binaries are self-contained: `--no-run` builds them here (no CUDA needed) into `gpu-bundle/`
//! with a `run.sh` that a GPU host with no Rust toolchain and no network can run.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

const BUNDLE: &str = "gpu-bundle";

pub fn run(root: &Path, no_run: bool) -> Result<()> {
    if !no_run {
        // FRUGAL_REQUIRE_GPU turns the tests' "SKIPPED: no CUDA device" into a failure.
        let status = Command::new(env!("CARGO"))
            .current_dir(root)
            .env("FRUGAL_REQUIRE_GPU", "1")
            .args([
                "test",
                "--release",
                "-p",
                "kernels",
                "--test",
                "gpu_*",
                "--",
                "--nocapture",
            ])
            .status()?;
        if !status.success() {
            bail!("GPU tests failed (or no GPU was found)");
        }
        return Ok(());
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "test",
            "--profile",
            "gpu-bundle",
            "-p",
            "kernels",
            "--test",
            "gpu_*",
            "--no-run",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the GPU tests failed");
    }
    let mut binaries: Vec<PathBuf> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_gpu_test = msg["reason"] == "compiler-artifact"
            && msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
            && msg["target"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("gpu_"));
        if let (true, Some(exe)) = (is_gpu_test, msg["executable"].as_str()) {
            binaries.push(PathBuf::from(exe));
        }
    }
    if binaries.is_empty() {
        bail!("no GPU test binaries were built");
    }
    let bundle = root.join(BUNDLE);
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(bundle.join("tests"))?;
    let mut script = String::from(
        "#!/usr/bin/env bash\n\
         # Runs frugal's GPU tests on a GPU host; built by `cargo xtask test-gpu --no-run`.\n\
         # Needs only an NVIDIA driver (CUDA 12.4 or newer). Exit status: the number of failures.\n\
         cd \"$(dirname \"$0\")\"\nexport FRUGAL_REQUIRE_GPU=1\nfail=0\n",
    );
    for bin in &binaries {
        let file = bin
            .file_name()
            .context("binary name")?
            .to_string_lossy()
            .into_owned();
        // Cargo names test binaries `<target>-<hash>`: keep the target name.
        let name = file
            .rsplit_once('-')
            .map_or(file.as_str(), |(n, _)| n)
            .to_string();
        std::fs::copy(bin, bundle.join("tests").join(&name))
            .with_context(|| format!("copying {}", bin.display()))?;
        script.push_str(&format!(
            "echo \"== {name}\"\n./tests/{name} --test-threads=1 --nocapture || fail=$((fail+1))\n"
        ));
    }
    script.push_str("echo \"GPU test binaries failed: $fail\"\nexit $fail\n");
    let run_sh = bundle.join("run.sh");
    std::fs::write(&run_sh, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run_sh, std::fs::Permissions::from_mode(0o755))?;
    }
    eprintln!(
        "test-gpu: {} binaries in {BUNDLE}/; on a GPU host run `{BUNDLE}/run.sh`",
        binaries.len()
    );
    Ok(())
}
