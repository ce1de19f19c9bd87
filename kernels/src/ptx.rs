//! PTX of every CUDA source, compiled by `cargo xtask ptx` (NVRTC 12.4, PTX ISA 8.4, sm_80: loads
//! on drivers for CUDA 12.4 and newer, on Ampere, Hopper and later GPUs) and committed, so users
//! need no CUDA compiler.

/// A compiled CUDA source: its module name and PTX text.
#[derive(Debug, Clone, Copy)]
pub struct PtxModule {
    pub name: &'static str,
    pub ptx: &'static str,
}

pub const LINEAR_SCAN: PtxModule = PtxModule {
    name: "linear_scan",
    ptx: include_str!("../ptx/linear_scan.ptx"),
};

pub const ADDITIVE_ATTENTION: PtxModule = PtxModule {
    name: "additive_attention",
    ptx: include_str!("../ptx/additive_attention.ptx"),
};

pub const TERNARY_MATMUL: PtxModule = PtxModule {
    name: "ternary_matmul",
    ptx: include_str!("../ptx/ternary_matmul.ptx"),
};

pub const WINDOW_ATTENTION: PtxModule = PtxModule {
    name: "window_attention",
    ptx: include_str!("../ptx/window_attention.ptx"),
};

pub const GATED_RETENTION: PtxModule = PtxModule {
    name: "gated_retention",
    ptx: include_str!("../ptx/gated_retention.ptx"),
};

pub const SPARSE_ATTENTION: PtxModule = PtxModule {
    name: "sparse_attention",
    ptx: include_str!("../ptx/sparse_attention.ptx"),
};

/// Every module, for listings such as `frugal info`.
pub const MODULES: &[PtxModule] = &[
    LINEAR_SCAN,
    ADDITIVE_ATTENTION,
    TERNARY_MATMUL,
    WINDOW_ATTENTION,
    GATED_RETENTION,
    SPARSE_ATTENTION,
];

impl PtxModule {
    /// The kernels (`.entry` points) this module defines.
    pub fn entries(&self) -> Vec<&'static str> {
        self.ptx
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix(".visible .entry "))
            .map(|rest| rest.split('(').next().unwrap_or(rest).trim())
            .collect()
    }

    /// The PTX ISA version the module declares (`.version`), e.g. `"8.4"`.
    pub fn isa_version(&self) -> Option<&'static str> {
        self.ptx
            .lines()
            .find_map(|l| l.trim().strip_prefix(".version "))
            .map(str::trim)
    }
}
