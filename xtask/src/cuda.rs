//! The pinned CUDA compiler, installed from PyPI into `.cuda/` (git-ignored).
//!
//! The shipped PTX must load on drivers for CUDA 12.4 and newer, and a driver loads PTX of an ISA
//! no newer than its own: CUDA 12.4 NVRTC emits ISA 8.4, so that is the compiler (nvcc 13 emits
//! ISA 9.0, which needs a CUDA 13 driver). The CUDA 12 wheels carry NVRTC, ptxas and the headers
//! but no nvcc, which is fine: NVRTC compiles, ptxas assembles as a check.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `(package, version)`: every wheel of the pinned toolchain, one CUDA release.
pub const WHEELS: &[(&str, &str)] = &[
    ("nvidia-cuda-nvrtc-cu12", "12.4.127"),   // NVRTC: .cu -> PTX
    ("nvidia-cuda-runtime-cu12", "12.4.127"), // headers: cuda_bf16.h, cuda_fp16.h
    ("nvidia-cuda-nvcc-cu12", "12.4.131"),    // ptxas: PTX -> SASS, the assembly check
];

pub fn install_dir(root: &Path) -> PathBuf {
    root.join(".cuda")
}

fn stamp() -> String {
    WHEELS.iter().map(|(p, v)| format!("{p}=={v}\n")).collect()
}

pub fn setup(root: &Path) -> Result<()> {
    let dir = install_dir(root);
    let stamp_file = dir.join("INSTALLED");
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp()) {
        eprintln!(
            "setup-cuda: pinned CUDA compiler already in {}",
            dir.display()
        );
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing stale {}", dir.display()))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "setup-cuda: installing {} wheels into {} ...",
        WHEELS.len(),
        dir.display()
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&dir)
        .args(WHEELS.iter().map(|(p, v)| format!("{p}=={v}")))
        .status()
        .with_context(|| format!("running {python} -m pip (set PYTHON to another interpreter)"))?;
    if !status.success() {
        bail!("pip failed to install the pinned CUDA wheels ({status})");
    }
    let tools = Toolchain::find(root)?;
    std::fs::write(&stamp_file, stamp())?;
    eprintln!(
        "setup-cuda: done: NVRTC {}, ptxas {}",
        tools.nvrtc.display(),
        tools.ptxas.display()
    );
    Ok(())
}

/// Paths into an installed toolchain.
pub struct Toolchain {
    pub nvrtc: PathBuf,
    pub ptxas: PathBuf,
    pub include: PathBuf,
}

impl Toolchain {
    pub fn find(root: &Path) -> Result<Self> {
        let nv = install_dir(root).join("nvidia");
        let tools = Toolchain {
            nvrtc: nv.join("cuda_nvrtc/lib/libnvrtc.so.12"),
            ptxas: nv.join("cuda_nvcc/bin/ptxas"),
            include: nv.join("cuda_runtime/include"),
        };
        for p in [&tools.nvrtc, &tools.ptxas, &tools.include] {
            if !p.exists() {
                bail!(
                    "{} is missing: run `cargo xtask setup-cuda` first",
                    p.display()
                );
            }
        }
        Ok(tools)
    }
}

/// `cargo check` of the kernels crate with candle's `cuda` feature, which builds candle's own
/// CUDA kernels with nvcc: it needs a full CUDA toolkit (nvcc on PATH or in $CUDA_HOME/bin) and
/// takes over 12 minutes on two cores, so CI never runs it.
pub fn check_candle_cuda(root: &Path) -> Result<()> {
    let nvcc_on_path = Command::new("nvcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let cuda_home = std::env::var_os("CUDA_HOME").map(PathBuf::from);
    if !nvcc_on_path
        && !cuda_home
            .as_ref()
            .is_some_and(|h| h.join("bin/nvcc").exists())
    {
        bail!(
            "check-cuda needs a CUDA toolkit (nvcc on PATH or in $CUDA_HOME/bin): candle's `cuda` \
             feature compiles its kernels with nvcc. The NVRTC toolchain of `setup-cuda` is not enough."
        );
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "check",
            "-p",
            "kernels",
            "--no-default-features",
            "--features",
            "candle-cuda",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo check with candle-cuda failed");
    }
    Ok(())
}
