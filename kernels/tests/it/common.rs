//! Shared by the tests: deterministic random inputs, a tensor's values, and (for the scans) the
//! comparison with the reference.
#![allow(dead_code)]
use kernels::linear_scan::{ScanElement, ScanInput, ScanOutput, ScanShape};

/// A tensor's values in order, widened to f32 (exactly, from bf16 or f16).
pub fn f32s(t: &candle_core::Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("a tensor's values")
}

/// splitmix64: a tiny deterministic generator, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    /// `n` values uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Owned inputs of one scan.
pub struct Case<T> {
    pub shape: ScanShape,
    pub a: Vec<T>,
    pub x: Vec<T>,
    pub h0: Option<Vec<f32>>,
    pub reset: Option<Vec<u8>>,
}

/// Where resets go.
#[derive(Clone, Copy, Debug)]
pub enum Resets {
    None,
    /// At the first step and at the borders of the CUDA kernel's segments (16) and chunks (128).
    Borders,
    /// Each position with probability 1/p.
    Random(u64),
}

impl<T: ScanElement> Case<T> {
    /// Decays in [0, 0.999) (as the RG-LRU's, docs/griffin.md §3), inputs in [-1, 1).
    pub fn random(shape: ScanShape, with_h0: bool, resets: Resets, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let a = (0..shape.len())
            .map(|_| T::from_f32(rng.uniform(0.0, 0.999)))
            .collect();
        let x = (0..shape.len())
            .map(|_| T::from_f32(rng.uniform(-1.0, 1.0)))
            .collect();
        let h0 = with_h0.then(|| {
            (0..shape.state_len())
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect()
        });
        let t = shape.seq_len;
        let reset = match resets {
            Resets::None => None,
            Resets::Borders => Some(
                (0..shape.batch * t)
                    .map(|i| {
                        let p = i % t;
                        u8::from(p == 0 || [15, 16, 17, 127, 128, 129, 256].contains(&p))
                    })
                    .collect(),
            ),
            Resets::Random(p) => Some(
                (0..shape.batch * t)
                    .map(|_| u8::from(rng.next_u64().is_multiple_of(p)))
                    .collect(),
            ),
        };
        Case {
            shape,
            a,
            x,
            h0,
            reset,
        }
    }

    pub fn input(&self) -> ScanInput<'_, T> {
        ScanInput {
            shape: self.shape,
            a: &self.a,
            x: &self.x,
            h0: self.h0.as_deref(),
            reset: self.reset.as_deref(),
        }
    }
}

/// Each shape runs without h0 or resets, with h0 and resets at the kernel's borders, and with
/// h0 and random resets.
pub const VARIANTS: [(bool, Resets); 3] = [
    (false, Resets::None),
    (true, Resets::Borders),
    (true, Resets::Random(9)),
];

/// The shapes the issue names: T = 1, 31, 32, 33, 1000, 4097 (around the warp and the chunk of
/// 128), odd channel counts, one and two sequences.
pub fn shapes() -> Vec<ScanShape> {
    let mut v = Vec::new();
    for &t in &[1, 31, 32, 33, 127, 128, 129, 1000, 4097] {
        for &(b, c) in &[(1, 1), (2, 37), (1, 65)] {
            v.push(ScanShape::new(b, t, c).expect("valid shape"));
        }
    }
    v
}

/// Asserts `got` matches `want` within `rtol`·|want| + `atol` elementwise (h compared in f32).
pub fn assert_close<T: ScanElement>(
    what: &str,
    got: &ScanOutput<T>,
    want: &ScanOutput<T>,
    rtol: f32,
    atol: f32,
) {
    assert_eq!(got.h.len(), want.h.len(), "{what}: h length");
    assert_eq!(got.h_last.len(), want.h_last.len(), "{what}: h_last length");
    let h = got
        .h
        .iter()
        .zip(&want.h)
        .map(|(g, w)| (g.to_f32(), w.to_f32()));
    for (i, (g, w)) in h.enumerate() {
        assert!(
            (g - w).abs() <= rtol * w.abs() + atol,
            "{what}: h[{i}] = {g}, reference {w}"
        );
    }
    for (i, (&g, &w)) in got.h_last.iter().zip(&want.h_last).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs() + 1e-5,
            "{what}: h_last[{i}] = {g}, reference {w}"
        );
    }
}
