//! Copies of the fixtures, and the ways a case corrupts them.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

/// Where the fixtures are, relative to this crate.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A fresh scratch directory for one case.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bad_inputs")
        .join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Copies a checkpoint directory's files (not its subdirectories) into `dest`.
pub fn copy_checkpoint(src: &Path, dest: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dest.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Sets `pointer` (a JSON pointer such as `/rope_parameters/rope_theta`) in `dir/config.json`.
pub fn set_config(dir: &Path, pointer: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        &mut json
    } else {
        json.pointer_mut(parent)
            .unwrap_or_else(|| panic!("{pointer}: no such parent"))
    };
    target[key] = value;
    std::fs::write(&path, json.to_string()).unwrap();
}

/// Rewrites tensor `name` of `dir/model.safetensors` with `f`.
pub fn edit_tensor(dir: &Path, name: &str, f: impl FnOnce(Tensor) -> Tensor) {
    let path = dir.join("model.safetensors");
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let t = tensors
        .remove(name)
        .unwrap_or_else(|| panic!("{name}: not in {}", path.display()));
    tensors.insert(name.to_string(), f(t));
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

/// `t` with its first value replaced by `value`.
pub fn with_first(t: Tensor, value: f32) -> Tensor {
    let mut v: Vec<f32> = t
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    v[0] = value;
    Tensor::from_vec(v, t.shape(), &Device::Cpu)
        .unwrap()
        .to_dtype(t.dtype())
        .unwrap()
}

/// Replaces `path` with a FIFO (which would block a reader that opened it until some writer
/// appears).
pub fn make_fifo(path: &Path) {
    if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// What one run of `frugal` gave.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `frugal args` with `env`, killing it after `deadline` (a hang is a failure).
pub fn run(args: &[String], env: &[(&str, &str)], deadline: Duration) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "frugal {} hung for {deadline:?}; stderr: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
