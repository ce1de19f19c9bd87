//! The hand-kept lists that must follow the CUDA sources, checked (as rust-analyzer's `tidy`
//! keeps its conventions by tests): every `kernels/cuda/*.cu` has its committed PTX and its
//! `kernels::ptx` module, and every kernel in that PTX is launchable on the emulator
//! (`kernels/emu/src/entries.cpp`) — and nothing is listed that no source defines.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// File stems in `dir` with extension `ext`.
fn stems(dir: &Path, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let p = e.expect("entry").path();
            (p.extension().and_then(|x| x.to_str()) == Some(ext))
                .then(|| p.file_stem().expect("stem").to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn every_cuda_source_has_its_ptx_and_module() {
    let sources = stems(&root().join("cuda"), "cu");
    let ptx = stems(&root().join("ptx"), "ptx");
    let modules: BTreeSet<String> = kernels::ptx::MODULES
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert!(!sources.is_empty());
    assert_eq!(
        sources, ptx,
        "kernels/cuda/*.cu against kernels/ptx/*.ptx (`cargo xtask ptx`)"
    );
    assert_eq!(
        sources, modules,
        "kernels/cuda/*.cu against kernels::ptx::MODULES"
    );
    for m in kernels::ptx::MODULES {
        let file = std::fs::read_to_string(root().join("ptx").join(format!("{}.ptx", m.name)))
            .expect("ptx file");
        assert_eq!(
            m.ptx, file,
            "{}: the embedded PTX is not the file's",
            m.name
        );
        assert!(!m.entries().is_empty(), "{}: no kernel", m.name);
    }
}

#[test]
fn every_kernel_is_launchable_on_the_emulator() {
    let entries_cpp =
        std::fs::read_to_string(root().join("emu/src/entries.cpp")).expect("entries.cpp");
    let listed: BTreeSet<String> = entries_cpp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FRUGAL_EMU_KERNEL("))
        .filter_map(|rest| rest.split(',').next())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.starts_with("selftest_") && name != "kernel")
        .collect();
    let defined: BTreeSet<String> = kernels::ptx::MODULES
        .iter()
        .flat_map(|m| m.entries())
        .map(String::from)
        .collect();
    assert_eq!(
        listed, defined,
        "the emulator's kEntries (left) against the kernels the PTX defines (right)"
    );
    for source in stems(&root().join("cuda"), "cu") {
        assert!(
            entries_cpp.contains(&format!("#include \"{source}.cu\"")),
            "entries.cpp does not include {source}.cu"
        );
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some("rs") {
            out.push(p);
        }
    }
}

/// The models call the kernels' candle ops on tensors, never a `*_cpu` host path or the raw
/// `kernels::gpu` launchers, and keep no device branches of their own: that is what lets one
/// model run on every device the ops support.
#[test]
fn models_call_ops_not_host_paths_or_device_branches() {
    let crates = root().join("../crates");
    let mut files = Vec::new();
    for model in [
        "bitnet",
        "fastformer",
        "griffin",
        "smartbird",
        "transformer",
        "yoco",
    ] {
        rust_files(&crates.join(model).join("src"), &mut files);
    }
    assert!(files.len() > 20, "found the model crates' sources");
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let host_kernel =
                code.contains("_cpu(") || code.contains("_cpu,") || code.contains("_cpu}");
            let device_branch = code.contains("is_cpu()") || code.contains("with_cpu_f32");
            if host_kernel || device_branch || code.contains("kernels::gpu") {
                offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "model code must call the kernels' ops (see kernels/src/op.rs):\n{}",
        offenders.join("\n")
    );
}
