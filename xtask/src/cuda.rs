//! The pinned CUDA compilers, installed from PyPI into `.cuda/` (git-ignored).
//!
//! Two releases, for two jobs:
//! - **Our kernels' PTX** must load on drivers for CUDA 12.4 and newer, and a driver loads PTX of
//!   an ISA no newer than its own: CUDA 12.4 NVRTC emits ISA 8.4, so that is the compiler. The
//!   CUDA 12 wheels carry NVRTC, ptxas and the headers but no nvcc, which is fine: NVRTC compiles,
//!   ptxas assembles as a check.
//! - **The `cuda` build** (candle's CUDA backend) compiles candle's own kernels with nvcc when it
//!   builds. The GPU host's driver is CUDA 13.0 (580) and a newer nvcc emits PTX that driver
//!   refuses, so nvcc is pinned to 13.0.x, with its front end (crt, nvvm), the runtime headers and
//!   CCCL. The libraries the binaries link (cuBLAS, cuRAND, NVRTC, the driver) are not
//!   downloaded: `cargo xtask gpu-bundle` links against stubs of them (see `stubs.rs`) and the GPU
//!   host brings the real ones.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `(package, version)`: every wheel of the pinned toolchain, one CUDA release.
pub const WHEELS: &[(&str, &str)] = &[
    ("nvidia-cuda-nvrtc-cu12", "12.4.127"),   // NVRTC: .cu -> PTX
    ("nvidia-cuda-runtime-cu12", "12.4.127"), // headers: cuda_bf16.h, cuda_fp16.h
    ("nvidia-cuda-nvcc-cu12", "12.4.131"),    // ptxas: PTX -> SASS, the assembly check
    // The `cuda` build: nvcc 13.0 for candle's kernels (into nvidia/cu13/).
    ("nvidia-cuda-nvcc", "13.0.88"),
    ("nvidia-cuda-crt", "13.0.88"), // nvcc's headers (crt/host_config.h)
    ("nvidia-nvvm", "13.0.88"),     // cicc, libdevice
    ("nvidia-cuda-runtime", "13.0.96"), // cuda_runtime.h, libcudart.so.13
    ("nvidia-cuda-cccl", "13.0.85"), // <nv/target>, which cuda_fp16.h includes
];

/// The GPU candle's kernels are compiled for when `CUDA_COMPUTE_CAP` is not set: the H200's.
pub const DEFAULT_COMPUTE_CAP: &str = "90";

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
    /// The CUDA 13.0 tree (`bin/nvcc`, `include`, `lib/libcudart.so.13`).
    pub cuda13: PathBuf,
}

impl Toolchain {
    pub fn find(root: &Path) -> Result<Self> {
        let nv = install_dir(root).join("nvidia");
        let tools = Toolchain {
            nvrtc: nv.join("cuda_nvrtc/lib/libnvrtc.so.12"),
            ptxas: nv.join("cuda_nvcc/bin/ptxas"),
            include: nv.join("cuda_runtime/include"),
            cuda13: nv.join("cu13"),
        };
        let nvcc = tools.cuda13.join("bin/nvcc");
        for p in [&tools.nvrtc, &tools.ptxas, &tools.include, &nvcc] {
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

/// The environment of a `cuda` build: nvcc 13.0 first on PATH, its tree as CUDA_HOME (candle's
/// kernel build finds the headers there), `link` (the stubs' folder, when given) as CUDA_PATH,
/// where cudarc's build script looks for the libraries to link, and the compute capability
/// candle's kernels are compiled for.
pub fn build_env(tools: &Toolchain, link: Option<&Path>) -> Result<Vec<(String, String)>> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut env = vec![
        (
            "PATH".to_string(),
            format!("{}:{path}", tools.cuda13.join("bin").display()),
        ),
        ("CUDA_HOME".into(), tools.cuda13.display().to_string()),
        (
            "CUDA_COMPUTE_CAP".into(),
            std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| DEFAULT_COMPUTE_CAP.into()),
        ),
    ];
    if let Some(link) = link {
        env.push(("CUDA_PATH".into(), link.display().to_string()));
    }
    Ok(env)
}

/// Where `cuda` builds put their artifacts: apart from the default build, whose cudarc links
/// differently.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target/cuda")
}

/// `cargo clippy` of the whole workspace in the `cuda` build (candle's CUDA backend, the kernels'
/// `cuda_fwd`), warnings denied, with the pinned nvcc 13.0: CI runs it. The first run compiles
/// candle's CUDA kernels (about 8 minutes on two cores).
pub fn check_cuda(root: &Path) -> Result<()> {
    let tools = Toolchain::find(root)?;
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .envs(build_env(&tools, None)?)
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--no-default-features",
            "--features",
            "cuda",
            "--target-dir",
        ])
        .arg(target_dir(root))
        .args(["--", "-D", "warnings"])
        .status()?;
    if !status.success() {
        bail!("clippy of the `cuda` build failed");
    }
    Ok(())
}
