//! CPU linear-scan throughput, beside a memcpy of the same bytes in the same run.
//!
//! The scan reads `a` and `x` and writes `h` (3 units of memory traffic); the baseline memcpy moves
//! the same traffic (copies 1.5 units), so `memcpy time / scan time` is the fraction of the
//! memory-bound limit the scan reaches. Criterion reports both as throughput in bytes/s: read the
//! ratio off the two lines of one run.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::linear_scan::{linear_scan_cpu, ScanElement, ScanInput, ScanShape};

fn inputs<T: ScanElement>(n: usize) -> (Vec<T>, Vec<T>) {
    let a = (0..n)
        .map(|i| T::from_f32(0.9 + (i % 97) as f32 * 1e-3))
        .collect();
    let x = (0..n)
        .map(|i| T::from_f32(((i % 89) as f32 - 44.0) / 44.0))
        .collect();
    (a, x)
}

fn bench<T: ScanElement>(c: &mut Criterion, dtype: &str) {
    let mut group = c.benchmark_group(format!("linear_scan_{dtype}"));
    group.sample_size(20);
    // (batch, seq_len, channels): a 2B-wide prefill, a long narrow one, a decode-sized batch.
    for (b, t, ch) in [(1, 2048, 2560), (1, 65_536, 64), (8, 512, 1024)] {
        let shape = ScanShape::new(b, t, ch).expect("shape");
        let (a, x) = inputs::<T>(shape.len());
        let bytes = 3 * shape.len() * std::mem::size_of::<T>();
        group.throughput(Throughput::Bytes(bytes as u64));
        let id = format!("{b}x{t}x{ch}");
        group.bench_with_input(BenchmarkId::new("scan", &id), &shape, |bench, &shape| {
            let input = ScanInput {
                shape,
                a: &a,
                x: &x,
                h0: None,
                reset: None,
            };
            bench.iter(|| linear_scan_cpu(&input).expect("scan"));
        });
        // The same traffic through memcpy: the scan reads 2 units and writes 1; copying 1.5
        // units reads 1.5 and writes 1.5. Into a fresh buffer each time, as the scan allocates
        // its output.
        group.bench_with_input(
            BenchmarkId::new("memcpy_same_bytes", &id),
            &shape,
            |bench, _| {
                let src: Vec<u8> = vec![1u8; bytes / 2];
                bench.iter(|| {
                    let mut dst = vec![0u8; src.len()];
                    dst.copy_from_slice(&src);
                    dst
                });
            },
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    frugal_benches::pin_threads();
    bench::<f32>(c, "f32");
    bench::<half::bf16>(c, "bf16");
}

criterion_group!(linear_scan, benches);
criterion_main!(linear_scan);
