//! Launch plans: the grid, block and shared memory of each kernel launch, computed once in Rust
//! and used both by the GPU launchers ([`crate::gpu`]) and by the CPU emulation in tests, so the
//! emulated tests cover the launch logic too.

/// One kernel launch: a PTX entry point and its launch configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLaunch {
    pub kernel: &'static str,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

/// CUDA's grid limits in y and z.
pub(crate) const MAX_GRID_YZ: usize = 65_535;
