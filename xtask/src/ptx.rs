//! `cargo xtask ptx`: every `kernels/cuda/*.cu` to PTX through NVRTC, then ptxas as a check.
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cuda::Toolchain;

/// The virtual architecture every kernel targets: Ampere and later.
const ARCH: &str = "compute_80";
/// Real architectures the PTX is assembled for, as a check.
const ASSEMBLE_FOR: &[&str] = &["sm_80", "sm_90"];
/// A source containing this marker also gets an sm_90a PTX (Hopper-only instructions).
const SM90A_MARKER: &str = "frugal: sm_90a";

pub fn run(root: &Path, check: bool) -> Result<()> {
    let tools = Toolchain::find(root)?;
    let nvrtc = Nvrtc::load(&tools.nvrtc)?;
    let cuda_dir = root.join("kernels/cuda");
    let ptx_dir = root.join("kernels/ptx");
    std::fs::create_dir_all(&ptx_dir)?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&cuda_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("no .cu sources in {}", cuda_dir.display());
    }
    let include = root.join("kernels/cuda/include");
    let mut stale = Vec::new();
    let mut spills = Vec::new();
    for src in &sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("bad source name")?;
        let text = std::fs::read_to_string(src)?;
        let mut targets = vec![(ARCH, format!("{stem}.ptx"))];
        if text.contains(SM90A_MARKER) {
            targets.push(("compute_90a", format!("{stem}.sm_90a.ptx")));
        }
        for (arch, out_name) in targets {
            eprintln!("ptx: {} ({arch})", src.display());
            let ptx = nvrtc.compile(
                &text,
                &format!("{stem}.cu"),
                arch,
                &[&include, &tools.include],
            )?;
            let out = ptx_dir.join(&out_name);
            if !crate::write_or_check(&out, &ptx, check)? {
                stale.push(out.clone());
            }
            let real: &[&str] = if arch == "compute_90a" {
                &["sm_90a"]
            } else {
                ASSEMBLE_FOR
            };
            for sm in real {
                spills.extend(assemble(&tools.ptxas, &ptx, sm, &out_name)?);
            }
        }
    }
    for s in &spills {
        eprintln!("ptx: warning: register spills: {s}");
    }
    if check && !stale.is_empty() {
        bail!(
            "committed PTX is stale: {}; run `cargo xtask ptx` and commit kernels/ptx/",
            stale
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "ptx: {} source(s) {}",
        sources.len(),
        if check { "fresh" } else { "compiled" }
    );
    Ok(())
}

/// Assembles `ptx` for `sm` with ptxas; returns a line per kernel that spills registers.
fn assemble(ptxas: &Path, ptx: &str, sm: &str, name: &str) -> Result<Vec<String>> {
    let tmp = std::env::temp_dir().join(format!("frugal-{}-{name}", std::process::id()));
    std::fs::write(&tmp, ptx)?;
    let out = Command::new(ptxas)
        .args(["-v", "-arch", sm, "-o", "/dev/null"])
        .arg(&tmp)
        .output()
        .with_context(|| format!("running {}", ptxas.display()))?;
    let _ = std::fs::remove_file(&tmp);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("ptxas -arch {sm} rejected {name}:\n{log}");
    }
    let mut spills = Vec::new();
    let mut entry = String::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            entry = rest.split('\'').next().unwrap_or_default().to_string();
        }
        if line.contains("spill stores") && !line.contains(" 0 bytes spill stores") {
            spills.push(format!("{name} {entry} ({sm}): {}", line.trim()));
        }
    }
    Ok(spills)
}

/// The few NVRTC entry points this needs, from the pinned libnvrtc.
struct Nvrtc {
    _lib: libloading::Library,
    create: unsafe extern "C" fn(
        *mut *mut c_void,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    compile: unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> c_int,
    log_size: unsafe extern "C" fn(*mut c_void, *mut usize) -> c_int,
    log: unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int,
    ptx_size: unsafe extern "C" fn(*mut c_void, *mut usize) -> c_int,
    ptx: unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int,
    destroy: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
}

impl Nvrtc {
    fn load(path: &Path) -> Result<Self> {
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions; each symbol
        // is read with the signature NVRTC's nvrtc.h declares.
        unsafe {
            let lib = libloading::Library::new(path)
                .with_context(|| format!("loading {}", path.display()))?;
            Ok(Nvrtc {
                create: *lib.get(b"nvrtcCreateProgram\0")?,
                compile: *lib.get(b"nvrtcCompileProgram\0")?,
                log_size: *lib.get(b"nvrtcGetProgramLogSize\0")?,
                log: *lib.get(b"nvrtcGetProgramLog\0")?,
                ptx_size: *lib.get(b"nvrtcGetPTXSize\0")?,
                ptx: *lib.get(b"nvrtcGetPTX\0")?,
                destroy: *lib.get(b"nvrtcDestroyProgram\0")?,
                _lib: lib,
            })
        }
    }

    fn compile(&self, src: &str, name: &str, arch: &str, includes: &[&Path]) -> Result<String> {
        let src = CString::new(src)?;
        let name = CString::new(name)?;
        let mut opts = vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".to_string(),
            // IEEE division and square root, no flush-to-zero: the kernels match the CPU
            // references to f32 rounding, which fast math would not.
            "--fmad=true".to_string(),
        ];
        opts.extend(
            includes
                .iter()
                .map(|i| format!("--include-path={}", i.display())),
        );
        let opts: Vec<CString> = opts
            .into_iter()
            .map(CString::new)
            .collect::<Result<_, _>>()?;
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: *mut c_void = std::ptr::null_mut();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the calls; `prog`
        // is created before use and destroyed once; buffers are sized from NVRTC's own answers.
        unsafe {
            let rc = (self.create)(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if rc != 0 {
                bail!("nvrtcCreateProgram failed ({rc})");
            }
            let rc = (self.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
            let mut n = 0usize;
            (self.log_size)(prog, &mut n);
            let mut log = vec![0u8; n.max(1)];
            (self.log)(prog, log.as_mut_ptr() as *mut c_char);
            let log = String::from_utf8_lossy(&log)
                .trim_end_matches('\0')
                .trim()
                .to_string();
            if rc != 0 {
                (self.destroy)(&mut prog);
                bail!("NVRTC failed to compile {}:\n{log}", name.to_string_lossy());
            }
            if !log.is_empty() {
                eprintln!("{log}");
            }
            (self.ptx_size)(prog, &mut n);
            let mut ptx = vec![0u8; n];
            (self.ptx)(prog, ptx.as_mut_ptr() as *mut c_char);
            (self.destroy)(&mut prog);
            let ptx = String::from_utf8(ptx)?;
            Ok(ptx.trim_end_matches('\0').to_string())
        }
    }
}
