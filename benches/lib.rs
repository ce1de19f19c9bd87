//! Criterion benches live beside this file; `cargo bench` runs them (see README.md). Shared here:
//! thread pinning, a median timer, and the machine's memory bandwidth measured in the same run.
use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

/// Sets `RAYON_NUM_THREADS` (to the machine's parallelism) unless it is set. candle 0.11's CPU
/// matmul asks for its thread count on every call and, without this variable, reads
/// `/proc/cpuinfo` each time, which would be timed as part of every model, ours and the peers'.
/// Every bench calls this first, before its measurements start threads of their own.
pub fn pin_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// The median of `runs` timings of `f` in seconds, after one warm-up call.
pub fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// A model over random f32 weights: `build` runs once over an empty `VarMap` (which creates its
/// variables, as candle's builders do, filled with their defaults: zero for a bare `get`), every
/// variable is then set to N(0, 0.02) noise, and `build` runs again over the filled map.
///
/// Why not the first build: its weights are mostly zeros, and zeros are bf16 values, so the
/// layers that keep a weight as shipped (`layers::Linear`) store them in bf16 and read half the
/// bytes an f32 checkpoint makes them read (the Griffin bench measured such weights until this
/// helper; see README.md). Returns the model and the map (the same tensors, for a peer).
pub fn random_f32_model<M, E: std::fmt::Debug>(
    build: impl Fn(candle_nn::VarBuilder) -> Result<M, E>,
) -> (M, candle_nn::VarMap) {
    use candle_core::{DType, Device, Tensor};
    let map = candle_nn::VarMap::new();
    let vb = || candle_nn::VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    build(vb()).expect("first build");
    for var in map.all_vars() {
        let noise = Tensor::randn(0f32, 0.02, var.shape(), &Device::Cpu).expect("noise");
        var.set(&noise).expect("set");
    }
    let model = build(vb()).expect("second build");
    (model, map)
}

/// Bytes per second of a threaded read (sum) over `bytes`, and of a threaded memcpy of `bytes`:
/// what any decode step that streams its weights from memory is bounded by.
pub fn bandwidth(bytes: usize) -> (f64, f64) {
    let src = vec![1u64; bytes / 8];
    let mut dst = vec![0u64; bytes / 8];
    let read = median_secs(5, || {
        let s: u64 = src.par_chunks(1 << 16).map(|c| c.iter().sum::<u64>()).sum();
        black_box(s);
    });
    let copy = median_secs(5, || {
        dst.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
        black_box(&dst);
    });
    (bytes as f64 / read, bytes as f64 / copy)
}
