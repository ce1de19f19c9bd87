//! Criterion benches live beside this file; `cargo bench` runs them (see README.md).

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
