//! Fastformer's scaling against standard softmax attention, and its kernel against memory.
//!
//! 1. A table (printed first): encoder forward time of Fastformer (the `fastformer` crate on the
//!    fused additive-attention kernel) and of a softmax-attention encoder of the same size (BERT
//!    layers in candle ops: the same projections, FFN and LayerNorms, attention `softmax(QKᵀ/√d)V`),
//!    at N = 512, 2048, 8192 in one run: their ratio, and each one's growth as N doubles
//!    (Fastformer ≈ 2×: linear; attention → 4×: quadratic). Median of 3 runs each.
//! 2. criterion: the additive-attention kernel (CPU fast path) against a memcpy moving the same
//!    bytes (reads q, k, v, writes u).
//!
//! Size: the official demo's encoder (hidden 256, 16 heads, 2 layers, intermediate 256).
use frugal_benches::median_secs;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kernels::additive_attention::{
    additive_attention_cpu, AdditiveInput, AdditiveShape, ScoreForm,
};

const HIDDEN: usize = 256;
const HEADS: usize = 16;
const LAYERS: usize = 2;
const NS: [usize; 3] = [512, 2048, 8192];

/// A BERT layer: the same sublayers as Fastformer's, with softmax attention.
struct SoftmaxLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm1: LayerNorm,
    inter: Linear,
    out: Linear,
    norm2: LayerNorm,
}

impl SoftmaxLayer {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(SoftmaxLayer {
            q: linear(HIDDEN, HIDDEN, vb.pp("q"))?,
            k: linear(HIDDEN, HIDDEN, vb.pp("k"))?,
            v: linear(HIDDEN, HIDDEN, vb.pp("v"))?,
            o: linear(HIDDEN, HIDDEN, vb.pp("o"))?,
            norm1: layer_norm(HIDDEN, 1e-12, vb.pp("norm1"))?,
            inter: linear(HIDDEN, HIDDEN, vb.pp("inter"))?,
            out: linear(HIDDEN, HIDDEN, vb.pp("out"))?,
            norm2: layer_norm(HIDDEN, 1e-12, vb.pp("norm2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let d = HIDDEN / HEADS;
        let heads = |t: Tensor| t.reshape((b, n, HEADS, d))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = (
            heads(self.q.forward(x)?)?,
            heads(self.k.forward(x)?)?,
            heads(self.v.forward(x)?)?,
        );
        // One head at a time: the N×N scores of all heads at once would not fit at N = 8192.
        let mut outs = Vec::with_capacity(HEADS);
        for h in 0..HEADS {
            let (qh, kh, vh) = (q.narrow(1, h, 1)?, k.narrow(1, h, 1)?, v.narrow(1, h, 1)?);
            let scores = (qh.matmul(&kh.t()?)? / (d as f64).sqrt())?;
            outs.push(candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&vh)?);
        }
        let att = Tensor::cat(&outs, 1)?
            .transpose(1, 2)?
            .reshape((b, n, HIDDEN))?;
        let x = self.norm1.forward(&(self.o.forward(&att)? + x)?)?;
        self.norm2
            .forward(&(self.out.forward(&self.inter.forward(&x)?.gelu_erf()?)? + x)?)
    }
}

fn scaling_table() {
    let cfg = fastformer::Config::from_json(&format!(
        r#"{{"hidden_size": {HIDDEN}, "num_attention_heads": {HEADS}, "num_hidden_layers": {LAYERS},
            "intermediate_size": {HIDDEN}, "max_position_embeddings": 8192, "vocab_size": 1000, "num_labels": 4}}"#
    ))
    .expect("config");
    let map = VarMap::new();
    let fast = fastformer::Model::new(
        &cfg,
        VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
    )
    .expect("fastformer");
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let softmax: Vec<SoftmaxLayer> = (0..LAYERS)
        .map(|i| SoftmaxLayer::new(vb.pp(i)).expect("layer"))
        .collect();
    println!(
        "\nencoder forward, hidden {HIDDEN}, {HEADS} heads, {LAYERS} layers, batch 1 (median of 3)"
    );
    println!(
        "{:>6} {:>14} {:>14} {:>10} {:>16} {:>16}",
        "N", "fastformer ms", "softmax ms", "ratio", "fastformer ×/2N", "softmax ×/2N"
    );
    let mut prev: Option<(f64, f64)> = None;
    for n in NS {
        let ids = vec![(1..=n as u32).map(|i| i % 999 + 1).collect::<Vec<_>>()];
        let tf = median_secs(3, || {
            fast.forward(&ids).expect("forward");
        });
        let x = Tensor::randn(0f32, 1.0, (1, n, HIDDEN), &Device::Cpu).expect("x");
        let ts = median_secs(3, || {
            let mut h = x.clone();
            for l in &softmax {
                h = l.forward(&h).expect("softmax layer");
            }
        });
        // NS grows by 4 per row: growth per doubling is the square root of the row-to-row ratio.
        let growth = |now: f64, before: f64| format!("{:.2}", (now / before).sqrt());
        let (gf, gs) = prev.map_or(("-".into(), "-".into()), |(pf, ps)| {
            (growth(tf, pf), growth(ts, ps))
        });
        println!(
            "{n:>6} {:>14.1} {:>14.1} {:>9.1}x {gf:>16} {gs:>16}",
            tf * 1e3,
            ts * 1e3,
            ts / tf
        );
        prev = Some((tf, ts));
    }
    println!();
}

fn kernel_vs_memcpy(c: &mut Criterion) {
    frugal_benches::pin_threads();
    scaling_table();
    let mut group = c.benchmark_group("additive_attention");
    group.sample_size(20);
    for n in [2048, 8192] {
        let shape = AdditiveShape::new(1, n, HEADS, HIDDEN / HEADS).expect("shape");
        let data: Vec<f32> = (0..shape.len())
            .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
            .collect();
        let w: Vec<f32> = (0..HEADS * HIDDEN)
            .map(|i| ((i % 13) as f32 - 6.0) / 6.0)
            .collect();
        let b = vec![0.1f32; HEADS];
        let bytes = 4 * shape.len() * 4; // q, k, v read; u written
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("kernel", n), &shape, |bench, &shape| {
            let input = AdditiveInput {
                shape,
                form: ScoreForm::Full,
                q: &data,
                k: &data,
                v: &data,
                mask: None,
                wq: &w,
                bq: Some(&b),
                wk: &w,
                bk: Some(&b),
            };
            bench.iter(|| additive_attention_cpu(&input).expect("kernel"))
        });
        group.bench_with_input(
            BenchmarkId::new("memcpy_same_bytes", n),
            &shape,
            |bench, _| {
                let src = vec![1u8; bytes / 2];
                bench.iter(|| {
                    let mut dst = vec![0u8; src.len()];
                    dst.copy_from_slice(&src);
                    dst
                })
            },
        );
    }
    group.finish();
}

criterion_group!(fastformer_benches, kernel_vs_memcpy);
criterion_main!(fastformer_benches);
