//! GPU kernel benchmark (`cargo xtask bench-gpu`): every kernel at realistic shapes, on raw cudarc
//! buffers (in the default build the driver is loaded at run time; `cargo xtask gpu-bundle` builds
//! it in the `cuda` build for a GPU host). Per kernel and shape: time per call, effective bandwidth (the bytes the
//! computation must move, over the time), and that as a fraction of the device's peak memory
//! bandwidth (from the device's memory clock and bus width, or a table for known GPUs). Results
//! also go to `bench-gpu.json` (or `$FRUGAL_BENCH_JSON`).
//!
//!
//! The ternary matmul (BitNet) is also timed against cuBLAS's bf16 GEMM on the same shapes (a
//! dense `x · Wᵀ` with bf16 weights), when libcublas can be loaded on the host; the ratio is
//! printed beside it, and the row says so when cuBLAS is absent.
//!
//! Without a GPU it prints `SKIPPED: no CUDA device` and exits 0, unless FRUGAL_REQUIRE_GPU is set
//! (`cargo xtask bench-gpu` sets it), where it fails.
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use kernels::additive_attention::{AdditiveShape, ScoreForm};
use kernels::gated_retention::RetentionShape;
use kernels::gpu::additive_attention::{launch as additive_launch, DevicePointers};
use kernels::gpu::gated_retention::gated_retention_gpu;
use kernels::gpu::linear_scan::linear_scan_gpu;
use kernels::gpu::sparse_attention::{sketch_topk_gpu, sparse_attention_gpu};
use kernels::gpu::ternary_matmul::{ternary_matmul_gpu, DeviceTernary};
use kernels::gpu::window_attention::window_attention_gpu;
use kernels::linear_scan::ScanShape;
use kernels::sparse_attention::SparseShape;
use kernels::ternary_matmul::PackedTernary;
use kernels::window_attention::WindowShape;

/// Peak memory bandwidth in bytes/s: 2 (DDR) × memory clock × bus width; a table when the driver
/// does not report them.
fn peak_bandwidth(ctx: &Arc<CudaContext>, name: &str) -> f64 {
    let clock_khz = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
        .unwrap_or(0);
    let bus_bits = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
        .unwrap_or(0);
    if clock_khz > 0 && bus_bits > 0 {
        return 2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0;
    }
    let known = [
        ("H200", 4.8e12),
        ("H100", 3.35e12),
        ("A100", 2.0e12),
        ("L40S", 0.864e12),
        ("RTX 4090", 1.008e12),
    ];
    known
        .iter()
        .find(|(k, _)| name.contains(k))
        .map_or(f64::NAN, |(_, b)| *b)
}

/// Median seconds per call over 10 calls, after 2 warm-ups.
fn time(stream: &Arc<CudaStream>, mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    stream.synchronize().expect("sync");
    let mut t: Vec<f64> = (0..10)
        .map(|_| {
            let s = Instant::now();
            f();
            stream.synchronize().expect("sync");
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[5]
}

fn filled(stream: &Arc<CudaStream>, n: usize, value: f32) -> CudaSlice<f32> {
    stream.clone_htod(&vec![value; n]).expect("upload")
}

struct Row {
    kernel: &'static str,
    shape: String,
    secs: f64,
    bytes: f64,
    /// cuBLAS bf16 seconds for the same product, where measured.
    cublas_secs: Option<f64>,
}

/// cuBLAS bf16 `y [m, n] = x [m, k] · W[n, k]ᵀ` (row-major), or `None` without libcublas.
fn cublas_bf16(stream: &Arc<CudaStream>, m: usize, n: usize, k: usize) -> Option<f64> {
    use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
    use half::bf16;
    // SAFETY: only tries to dlopen the library under its known names. (The `cuda` build links
    // cuBLAS instead: it is always there.)
    #[cfg(not(feature = "cuda"))]
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return None;
    }
    let blas = CudaBlas::new(stream.clone()).ok()?;
    let w = stream.alloc_zeros::<bf16>(n * k).ok()?;
    let x = stream.alloc_zeros::<bf16>(m * k).ok()?;
    let mut y = stream.alloc_zeros::<bf16>(m * n).ok()?;
    // Column-major: W is k×n, x is k×m; yᵀ (n×m) = Wᵀ·x.
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: bf16::ONE,
        lda: k as i32,
        ldb: k as i32,
        beta: bf16::ZERO,
        ldc: n as i32,
    };
    Some(time(stream, || {
        // SAFETY: the buffers hold exactly the shapes the config describes.
        unsafe { blas.gemm(cfg, &w, &x, &mut y) }.expect("cublas gemm");
    }))
}

fn main() {
    let required = std::env::var_os("FRUGAL_REQUIRE_GPU").is_some();
    let ctx = match kernels::gpu::context(0) {
        Ok(ctx) => ctx,
        Err(e) if required => {
            eprintln!("bench-gpu: no usable GPU: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            println!(
                "SKIPPED: no CUDA device ({e}); `cargo xtask bench-gpu` on a GPU host runs this"
            );
            return;
        }
    };
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let peak = peak_bandwidth(&ctx, &name);
    let stream = ctx.default_stream();
    let mut rows = Vec::new();

    // Linear scan: a 2B-wide prefill, a long narrow prompt (the chunked design's case), a batch.
    for (b, t, c) in [
        (1, 4096, 2560),
        (1, 65_536, 2560),
        (8, 65_536, 256),
        (1, 65_536, 16),
    ] {
        let shape = ScanShape::new(b, t, c).expect("shape");
        let (a, x) = (
            filled(&stream, shape.len(), 0.9),
            filled(&stream, shape.len(), 0.1),
        );
        let secs = time(&stream, || {
            linear_scan_gpu(&stream, shape, &a, &x, None, None).expect("scan");
        });
        // a and x read, h written: the minimum traffic.
        rows.push(Row {
            kernel: "linear_scan_f32",
            shape: shape.to_string(),
            secs,
            bytes: 3.0 * shape.len() as f64 * 4.0,
            cublas_secs: None,
        });
    }

    // Additive attention: the official code's full-width scores, hidden 1024 (16 heads x 64).
    for (b, n) in [(1, 8192), (1, 65_536), (16, 4096)] {
        let shape = AdditiveShape::new(b, n, 16, 64).expect("shape");
        let (q, k, v) = (
            filled(&stream, shape.len(), 0.01),
            filled(&stream, shape.len(), 0.02),
            filled(&stream, shape.len(), 0.03),
        );
        let (wq, wk) = (
            filled(&stream, 16 * 1024, 0.01),
            filled(&stream, 16 * 1024, 0.02),
        );
        let secs = time(&stream, || {
            let ptr = |s: &CudaSlice<f32>| s.device_ptr(&stream).0;
            let p = DevicePointers {
                q: ptr(&q),
                k: ptr(&k),
                v: ptr(&v),
                mask: None,
                wq: ptr(&wq),
                bq: None,
                wk: ptr(&wk),
                bk: None,
            };
            // SAFETY: the buffers live across the call and are sized by `shape`.
            unsafe { additive_launch(&stream, shape, ScoreForm::Full, &p) }
                .expect("additive attention");
        });
        // q, k, v read once and u written, at the least.
        rows.push(Row {
            kernel: "additive_attention_f32",
            shape: shape.to_string(),
            secs,
            bytes: 4.0 * shape.len() as f64 * 4.0,
            cublas_secs: None,
        });
    }

    // YOCO-3B shapes (24 heads x 128; cross-decoder 8 KV heads): sliding-window prefill at 64K,
    // causal prefill at 16K, a decode step against a 64K cache, and gated retention at 64K.
    for (q_len, k_len, heads, kv_heads, window) in [
        (65_536, 65_536, 24, 24, Some(1024)),
        (16_384, 16_384, 24, 8, None),
        (1, 65_536, 24, 8, None),
    ] {
        let shape = WindowShape {
            batch: 1,
            q_len,
            k_len,
            heads,
            kv_heads,
            head_dim: 128,
            q_offset: k_len - q_len,
            k_offset: 0,
            window,
        };
        let q = filled(&stream, shape.q_elems(), 0.01);
        let (k, v) = (
            filled(&stream, shape.kv_elems(), 0.02),
            filled(&stream, shape.kv_elems(), 0.03),
        );
        let secs = time(&stream, || {
            window_attention_gpu(&stream, shape, &q, &k, &v, 0.088).expect("window attention");
        });
        // The least traffic: q read and o written, every key and value read once. Prefill is
        // compute-bound, so its fraction of peak bandwidth is low by nature; the decode step
        // (one query over a 64K cache) is bound by reading the cache.
        rows.push(Row {
            kernel: "window_attention_f32",
            shape: shape.to_string(),
            secs,
            bytes: 4.0 * (2.0 * shape.q_elems() as f64 + 2.0 * shape.kv_elems() as f64),
            cublas_secs: None,
        });
    }
    {
        let shape = RetentionShape::new(1, 65_536, 24, 128, 128).expect("shape");
        let n = shape.batch * shape.seq_len * shape.heads * 128;
        let (q, k, v) = (
            filled(&stream, n, 0.01),
            filled(&stream, n, 0.01),
            filled(&stream, n, 0.01),
        );
        let g = filled(&stream, shape.batch * shape.seq_len * shape.heads, -0.01);
        let secs = time(&stream, || {
            gated_retention_gpu(&stream, shape, &q, &k, &v, &g, None).expect("gated retention");
        });
        // q, k, v, g read, o written: the least traffic (each value tile re-reads q and k).
        rows.push(Row {
            kernel: "gated_retention_f32",
            shape: shape.to_string(),
            secs,
            bytes: 4.0 * (4.0 * n as f64 + (n / 128) as f64),
            cublas_secs: None,
        });
    }

    // Smart Bird at N = 8192, 8 heads x 64, K = 64: the per-head Gumbel-top-K selection from an
    // N x N sketch, and the attention over the gathered keys.
    {
        let shape = SparseShape::new(1, 8192, 8, 64, 64).expect("shape");
        let n = shape.seq_len;
        let lp = filled(&stream, n * n, -9.0);
        let secs = time(&stream, || {
            sketch_topk_gpu(&stream, shape, &lp, None, Some(1), false).expect("top-k");
        });
        rows.push(Row {
            kernel: "sketch_topk",
            shape: shape.to_string(),
            secs,
            // Each head reads the sketch once; indices written.
            bytes: 4.0 * (shape.heads * n * n + shape.index_len()) as f64,
            cublas_secs: None,
        });
        let idx = sketch_topk_gpu(&stream, shape, &lp, None, Some(1), false).expect("top-k");
        let (q, k, v) = (
            filled(&stream, shape.elems(), 0.01),
            filled(&stream, shape.elems(), 0.02),
            filled(&stream, shape.elems(), 0.03),
        );
        let secs = time(&stream, || {
            sparse_attention_gpu(&stream, shape, &q, &k, &v, &idx, 0.125)
                .expect("sparse attention");
        });
        rows.push(Row {
            kernel: "sparse_attention_f32",
            shape: shape.to_string(),
            secs,
            // q read, o written, K gathered key and value rows per query.
            bytes: 4.0 * (2.0 * shape.elems() as f64 + 2.0 * (shape.elems() * shape.keys) as f64),
            cublas_secs: None,
        });
    }

    // Ternary matmul at BitNet 2B4T's shapes: decode GEMVs and prefill GEMMs.
    for (m, n, k) in [
        (1, 2560, 2560),
        (1, 6912, 2560),
        (1, 2560, 6912),
        (128, 6912, 2560),
        (512, 6912, 2560),
        (512, 2560, 6912),
    ] {
        let codes: Vec<i8> = (0..n * k).map(|i| (i % 3) as i8 - 1).collect();
        let w = PackedTernary::from_ternary(&codes, n, k, 0.02).expect("weights");
        let dw = DeviceTernary::upload(&stream, &w).expect("upload");
        let x = filled(&stream, m * k, 0.5);
        let secs = time(&stream, || {
            ternary_matmul_gpu(&stream, &x, m, &dw).expect("ternary matmul");
        });
        // Packed weights and f32 activations read, f32 output written.
        rows.push(Row {
            kernel: if m <= 4 {
                "ternary_gemv"
            } else {
                "ternary_gemm"
            },
            shape: format!("[m {m}] x [n {n}, k {k}]"),
            secs,
            bytes: (w.bytes().len() + 4 * m * k + 4 * m * n) as f64,
            cublas_secs: cublas_bf16(&stream, m, n, k),
        });
    }

    println!(
        "\nbench-gpu on {name}: peak memory bandwidth {:.0} GB/s",
        peak / 1e9
    );
    println!(
        "{:<24} {:<52} {:>10} {:>12} {:>10} {:>16}",
        "kernel", "shape", "ms", "GB/s", "of peak", "cuBLAS bf16 / us"
    );
    let mut json = Vec::new();
    for r in &rows {
        let bw = r.bytes / r.secs;
        let vs_cublas = match (r.kernel.starts_with("ternary"), r.cublas_secs) {
            (false, _) => String::new(),
            (true, Some(c)) => format!("{:.2}x", c / r.secs),
            (true, None) => "no libcublas".into(),
        };
        println!(
            "{:<24} {:<52} {:>10.3} {:>12.0} {:>9.2} {:>16}",
            r.kernel,
            r.shape,
            r.secs * 1e3,
            bw / 1e9,
            bw / peak,
            vs_cublas
        );
        let cublas_ms = r
            .cublas_secs
            .map_or("null".to_string(), |c| (c * 1e3).to_string());
        json.push(format!(
            r#"{{"kernel":"{}","shape":"{}","ms":{},"bytes":{},"gb_per_s":{},"fraction_of_peak":{},"cublas_bf16_ms":{}}}"#,
            r.kernel, r.shape, r.secs * 1e3, r.bytes, bw / 1e9, bw / peak, cublas_ms
        ));
    }
    let path = std::env::var("FRUGAL_BENCH_JSON").unwrap_or_else(|_| "bench-gpu.json".into());
    let doc = format!(
        r#"{{"device":"{name}","peak_bytes_per_s":{peak},"results":[{}]}}"#,
        json.join(",")
    );
    match std::fs::write(&path, doc) {
        Ok(()) => println!("wrote {path}"),
        Err(e) => eprintln!("bench-gpu: could not write {path}: {e}"),
    }
}
