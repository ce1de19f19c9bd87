//! `frugal info`: what this build has.
use anyhow::Result;
use kernels::cpu::CpuFeatures;
use kernels::ptx::MODULES;

pub fn print() -> Result<()> {
    println!("frugal {}", env!("CARGO_PKG_VERSION"));
    let cpu = CpuFeatures::detect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("CPU: {} threads, features: {}", threads, join(&cpu.names()));
    println!("GPU: {}", gpu_line());
    println!(
        "models on a GPU (--device cuda): {}",
        if cfg!(feature = "cuda") {
            "yes (candle's CUDA backend and the kernels' cuda_fwd)"
        } else {
            "no: build with `--no-default-features --features cuda`"
        }
    );
    println!("kernels (PTX embedded; needs a driver for CUDA 12.4 or newer, sm_80+):");
    for m in MODULES {
        println!(
            "  {} (PTX ISA {}): {}",
            m.name,
            m.isa_version().unwrap_or("?"),
            join(&m.entries())
        );
    }
    Ok(())
}

fn join(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(not(any(feature = "cuda-dynamic", feature = "cuda")))]
fn gpu_line() -> String {
    "not probed (built without `cuda` or `cuda-dynamic`)".into()
}

#[cfg(any(feature = "cuda-dynamic", feature = "cuda"))]
fn gpu_line() -> String {
    use kernels::gpu::GpuStatus;
    match kernels::gpu::status() {
        GpuStatus::NoDriver => "none (no CUDA driver library found); kernels run on the CPU".into(),
        GpuStatus::NoDevice(why) => format!("none ({why}); kernels run on the CPU"),
        GpuStatus::Devices(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("[{i}] {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
