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
