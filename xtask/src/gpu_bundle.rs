//! `cargo xtask test-gpu` and `cargo xtask bench-gpu`: the GPU tests (`kernels/tests/gpu/`)
//! and the GPU kernel benchmark (`benches/gpu.rs`).
//!
//! Both launch the embedded PTX on raw cudarc buffers, loading libcuda at run time, so their
//! binaries are self-contained: `--no-run` builds them here (no CUDA needed) into `gpu-bundle/`
//! with scripts that a GPU host with no Rust toolchain and no network can run. Run here, both fail
//! without a GPU (they set FRUGAL_REQUIRE_GPU).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

const BUNDLE: &str = "gpu-bundle";
const TESTS: &[&str] = &["test", "-p", "kernels", "--test", "gpu"];
const BENCH: &[&str] = &["bench", "-p", "frugal-benches", "--bench", "gpu"];

pub fn test(root: &Path, no_run: bool) -> Result<()> {
    if no_run {
        let bins = build(root, TESTS, |kind, name| kind == "test" && name == "gpu")?;
        let lines: Vec<String> = bins
            .iter()
            .map(|b| {
                format!(
                    "echo \"== {b}\"\n./tests/{b} --test-threads=1 --nocapture || fail=$((fail+1))"
                )
            })
            .collect();
        return write_script(
            root,
            "run.sh",
            "frugal's GPU tests",
            &lines,
            "GPU test binaries failed",
        );
    }
    run(
        root,
        TESTS,
        &["--release"],
        &["--", "--nocapture"],
        "GPU tests failed (or no GPU was found)",
    )
}

pub fn bench(root: &Path, no_run: bool) -> Result<()> {
    if no_run {
        let bins = build(root, BENCH, |kind, name| kind == "bench" && name == "gpu")?;
        let lines: Vec<String> = bins
            .iter()
            .map(|b| format!("FRUGAL_BENCH_JSON=bench-gpu.json ./tests/{b} || fail=$((fail+1))"))
            .collect();
        return write_script(
            root,
            "bench-gpu.sh",
            "frugal's GPU kernel benchmark",
            &lines,
            "benchmark failures",
        );
    }
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

/// Builds `cmd` under the stripped `gpu-bundle` profile and copies the binaries that `keep`
/// accepts (by target kind and name) into `gpu-bundle/tests/`; returns their names.
fn build(root: &Path, cmd: &[&str], keep: impl Fn(&str, &str) -> bool) -> Result<Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(cmd)
        .args([
            "--profile",
            "gpu-bundle",
            "--no-run",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building {} failed", cmd.join(" "));
    }
    let mut binaries: Vec<PathBuf> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let wanted = msg["reason"] == "compiler-artifact"
            && kinds
                .iter()
                .any(|k| k.as_str().is_some_and(|k| keep(k, name)));
        if let (true, Some(exe)) = (wanted, msg["executable"].as_str()) {
            binaries.push(PathBuf::from(exe));
        }
    }
    if binaries.is_empty() {
        bail!("{} built no binaries", cmd.join(" "));
    }
    let dir = root.join(BUNDLE).join("tests");
    std::fs::create_dir_all(&dir)?;
    let mut names = Vec::new();
    for bin in &binaries {
        let file = bin
            .file_name()
            .context("binary name")?
            .to_string_lossy()
            .into_owned();
        // Cargo names binaries `<target>-<hash>`: keep the target name.
        let name = file
            .rsplit_once('-')
            .map_or(file.as_str(), |(n, _)| n)
            .to_string();
        std::fs::copy(bin, dir.join(&name))
            .with_context(|| format!("copying {}", bin.display()))?;
        names.push(name);
    }
    Ok(names)
}

fn write_script(
    root: &Path,
    file: &str,
    what: &str,
    lines: &[String],
    failures: &str,
) -> Result<()> {
    let script = format!(
        "#!/usr/bin/env bash\n# Runs {what} on a GPU host; built by cargo xtask. Needs only an NVIDIA driver\n\
         # (CUDA 12.4 or newer). Exit status: the number of failures.\n\
         cd \"$(dirname \"$0\")\"\nexport FRUGAL_REQUIRE_GPU=1\nfail=0\n{}\necho \"{failures}: $fail\"\nexit $fail\n",
        lines.join("\n")
    );
    let path = root.join(BUNDLE).join(file);
    std::fs::write(&path, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    eprintln!("{BUNDLE}/{file} ready: copy {BUNDLE}/ to a GPU host and run it there");
    Ok(())
}
