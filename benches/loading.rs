//! What checking every weight for NaN/infinity at load costs (`layers::weights`).
//!
//! 1. The largest fixture (YOCO, gated retention): the whole `yoco::load` beside the finite
//!    check of all its tensors' bytes alone.
//! 2. A 2B-class shape: the check's rate over 512 MiB of bf16 weights beside the read bandwidth
//!    and beside the bf16 → f32 conversion that loading an f32 model does anyway, and the seconds
//!    each would take over RecurrentGemma-2B's 2.68 B parameters (5.4 GB of bf16).
//!
//! Prints one table from one run; `cargo bench -p frugal-benches --bench loading`.
use std::hint::black_box;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use frugal_benches::{bandwidth, median_secs, pin_threads};
use half::bf16;
use layers::weights::first_non_finite;

fn main() {
    pin_threads();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/yoco/tests/fixtures/yoco_gate_retention");
    let file = dir.join("model.safetensors");
    // SAFETY: a fixture file of the repository, read-only, not modified while mapped.
    let st = unsafe { MmapedSafetensors::new(&file) }.expect("fixture");
    let tensors = st.tensors();
    let bytes: usize = tensors.iter().map(|(_, v)| v.data().len()).sum();
    let check = median_secs(51, || {
        for (_, v) in &tensors {
            let dtype = DType::try_from(v.dtype()).expect("dtype");
            black_box(first_non_finite(v.data(), dtype));
        }
    });
    let load = median_secs(51, || {
        black_box(yoco::load(&dir, &Device::Cpu).expect("load"));
    });
    println!(
        "largest fixture (YOCO gRet, {:.2} MB of f32):",
        bytes as f64 / 1e6
    );
    println!(
        "  whole load {:.3} ms; finite check {:.3} ms = {:.1}% of the load",
        load * 1e3,
        check * 1e3,
        100.0 * check / load
    );

    let n = (512 << 20) / 2;
    let host: Vec<bf16> = (0..n)
        .map(|i| bf16::from_f32(((i % 977) as f32 - 488.0) * 1e-3))
        .collect();
    // SAFETY: `host` is a live Vec of `n` bf16 values, viewed as its 2n bytes, and not written
    // while the view lives.
    let raw = unsafe { std::slice::from_raw_parts(host.as_ptr().cast::<u8>(), 2 * n) };
    let check = median_secs(5, || {
        black_box(first_non_finite(raw, DType::BF16));
    });
    let t = Tensor::from_slice(&host, n, &Device::Cpu).expect("tensor");
    let convert = median_secs(5, || {
        black_box(t.to_dtype(DType::F32).expect("convert"));
    });
    let (read, _) = bandwidth(2 * n);
    let gb = |secs: f64| 2.0 * n as f64 / secs / 1e9;
    let model = 2.68e9 * 2.0;
    println!("2B-class weights (bf16, 512 MiB measured):");
    println!("  finite check {:.1} GB/s; bf16→f32 conversion {:.1} GB/s; threaded read bandwidth {:.1} GB/s", gb(check), gb(convert), read / 1e9);
    println!(
        "  over 5.4 GB (RecurrentGemma-2B): check {:.2} s, conversion {:.2} s, one threaded read {:.2} s; the check is {:.0}x faster than the conversion",
        model / (gb(check) * 1e9),
        model / (gb(convert) * 1e9),
        model / read,
        convert / check
    );
}
