//! RoPE as the reference applies it (docs/yoco.md §1): interleaved pairs `(2i, 2i+1)` and the
//! non-standard frequencies `1 / θ^linspace(0, 1, d/2)` (the endpoint 1 included, not the usual
//! `arange(0, d, 2)/d`), angles `position · frequency` in f32.

/// The frequencies of a head of size `head_dim`.
pub fn frequencies(head_dim: usize, theta: f64) -> Vec<f32> {
    let half = head_dim / 2;
    (0..half)
        .map(|i| {
            // torch.linspace(0, 1, n) in f32: i / (n − 1), the last one exactly 1.
            let x = if half == 1 {
                0.0
            } else {
                i as f32 / (half - 1) as f32
            };
            1.0 / (theta as f32).powf(x)
        })
        .collect()
}

/// Rotates `x [batch, len, heads, head_dim]` (row-major) in place; token `t` sits at position
/// `start + t`.
pub fn apply(
    x: &mut [f32],
    len: usize,
    heads: usize,
    head_dim: usize,
    start: usize,
    freqs: &[f32],
) {
    let row = heads * head_dim;
    for (r, token) in x.chunks_exact_mut(row).enumerate() {
        let pos = (start + r % len) as f32;
        for head in token.chunks_exact_mut(head_dim) {
            for (pair, &f) in head.chunks_exact_mut(2).zip(freqs) {
                let angle = pos * f;
                let (sin, cos) = angle.sin_cos();
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos - b * sin;
                pair[1] = a * sin + b * cos;
            }
        }
    }
}
