//! GPU discovery, PTX loading and the kernels' launchers, through cudarc.
//!
//! With the default `cuda-dynamic` feature the driver library is loaded at run time: this builds
//! on machines with no CUDA at all, and discovery reports "no driver" or "no device" instead of
//! panicking (cudarc's `CudaContext::new` panics when libcuda is absent, so it is only called
//! after [`status`] found a device).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    PushKernelArg,
};

use crate::error::{KernelError, Result};
use crate::params::FrugalLinearScanParams;
use crate::plan::KernelLaunch;
use crate::ptx::PtxModule;

pub mod additive_attention;
pub mod gated_retention;
pub mod linear_scan;
pub mod rg_lru;
pub mod sparse_attention;
pub mod ternary_matmul;
pub mod window_attention;

/// What this machine offers for CUDA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuStatus {
    /// No CUDA driver library (libcuda) could be loaded.
    NoDriver,
    /// The driver loaded but reports no device (or failed to initialise: the message says why).
    NoDevice(String),
    /// Devices by ordinal: their names.
    Devices(Vec<String>),
}

fn driver_present() -> bool {
    #[cfg(all(feature = "cuda-dynamic", not(feature = "candle-cuda")))]
    {
        // SAFETY: only tries to dlopen the driver library under its known names.
        unsafe { cudarc::driver::sys::is_culib_present() }
    }
    #[cfg(feature = "candle-cuda")]
    {
        true // linked at build time (candle's `cuda` feature)
    }
}

/// Probes for a driver and devices. Never panics.
pub fn status() -> GpuStatus {
    if !driver_present() {
        return GpuStatus::NoDriver;
    }
    let count = match CudaContext::device_count() {
        Ok(n) => n,
        Err(e) => return GpuStatus::NoDevice(e.to_string()),
    };
    if count <= 0 {
        return GpuStatus::NoDevice("the driver reports 0 devices".into());
    }
    let names = (0..count as usize)
        .map(|i| {
            CudaContext::new(i)
                .and_then(|ctx| ctx.name())
                .unwrap_or_else(|e| format!("device {i} (unusable: {e})"))
        })
        .collect();
    GpuStatus::Devices(names)
}

/// A context on device `ordinal`, or [`KernelError::NoCuda`] when there is none.
pub fn context(ordinal: usize) -> Result<Arc<CudaContext>> {
    match status() {
        GpuStatus::NoDriver => Err(KernelError::NoCuda("no CUDA driver library found".into())),
        GpuStatus::NoDevice(why) => Err(KernelError::NoCuda(why)),
        GpuStatus::Devices(d) if ordinal >= d.len() => Err(KernelError::NoCuda(format!(
            "device {ordinal} requested, {} present",
            d.len()
        ))),
        GpuStatus::Devices(_) => CudaContext::new(ordinal).map_err(cuda_err("creating a context")),
    }
}

pub(crate) fn cuda_err(context: &'static str) -> impl Fn(DriverError) -> KernelError {
    move |e| KernelError::Cuda {
        context: context.into(),
        message: e.to_string(),
    }
}

type ModuleCache = Mutex<HashMap<(usize, &'static str), Arc<CudaModule>>>;

/// A kernel of an embedded PTX module, loaded once per device.
pub fn function(ctx: &Arc<CudaContext>, module: PtxModule, kernel: &str) -> Result<CudaFunction> {
    static CACHE: OnceLock<ModuleCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (ctx.ordinal(), module.name);
    let loaded = {
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match cache.get(&key) {
            Some(m) => m.clone(),
            None => {
                let m = ctx
                    .load_module(cudarc::nvrtc::Ptx::from_src(module.ptx))
                    .map_err(cuda_err(
                        "loading PTX (needs a driver for CUDA 12.4 or newer)",
                    ))?;
                cache.insert(key, m.clone());
                m
            }
        }
    };
    loaded
        .load_function(kernel)
        .map_err(cuda_err("finding a kernel in its PTX module"))
}

/// Launches one kernel of `module`, configured by `launch`, with its parameter struct; `what`
/// names the launch in errors.
///
/// # Safety
/// Every pointer in `params` is a live buffer on `stream`'s context, large enough for what the
/// kernel accesses under `launch`.
pub(crate) unsafe fn launch_kernel<P: DeviceRepr>(
    stream: &Arc<CudaStream>,
    module: PtxModule,
    launch: &KernelLaunch,
    params: &P,
    what: &'static str,
) -> Result<()> {
    let f = function(stream.context(), module, launch.kernel)?;
    let cfg = LaunchConfig {
        grid_dim: (launch.grid[0], launch.grid[1], launch.grid[2]),
        block_dim: (launch.block[0], launch.block[1], launch.block[2]),
        shared_mem_bytes: launch.shared_bytes,
    };
    let mut builder = stream.launch_builder(&f);
    builder.arg(params);
    // SAFETY: the caller vouches for the buffers `params` points to.
    unsafe { builder.launch(cfg) }.map_err(cuda_err(what))?;
    Ok(())
}

/// `arg` lives on `found`'s device; an error naming both unless it is `expected`'s.
pub(crate) fn same_device(
    kernel: &'static str,
    arg: &'static str,
    found: &Arc<CudaContext>,
    expected: &Arc<CudaContext>,
) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(KernelError::Device {
        kernel,
        arg,
        expected: format!("cuda:{}", expected.ordinal()),
        found: format!("cuda:{}", found.ordinal()),
    })
}

// SAFETY: a plain C struct of pointers and integers (`frugal_params.h`), passed by value exactly as
// the kernel declares it.
unsafe impl cudarc::driver::DeviceRepr for FrugalLinearScanParams {}

/// Runs the `FRUGAL_REQUIRE_GPU`-aware probe GPU tests use: a context, or `None` after printing
/// `SKIPPED: no CUDA device` — and a panic instead when `FRUGAL_REQUIRE_GPU` is set
/// (`cargo xtask test-gpu`), so a GPU run cannot pass by skipping.
pub fn test_context(test: &str) -> Option<Arc<CudaContext>> {
    match context(0) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var_os("FRUGAL_REQUIRE_GPU").is_some() {
                panic!("{test}: FRUGAL_REQUIRE_GPU is set but there is no usable GPU: {e}");
            }
            // Straight to the stderr handle: libtest's capture (print!/eprint!) would hide it,
            // and a skip must be visible in a plain `cargo test`.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no CUDA device ({test}: {e})");
            None
        }
    }
}
