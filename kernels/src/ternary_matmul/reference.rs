//! The plain reference: quantise each token, unpack one weight at a time, accumulate in i32.
use super::{quantize_row, PackedTernary, TernaryShape};
use crate::error::Result;

/// `y [m, n]` for `x [m, k]` (see the module docs for the math).
pub fn ternary_matmul_reference(x: &[f32], m: usize, w: &PackedTernary) -> Result<Vec<f32>> {
    let shape = TernaryShape::of(x, m, w)?;
    let (n, k) = (shape.n, shape.k);
    let mut y = vec![0.0f32; m * n];
    let mut q = vec![0i8; k];
    for t in 0..m {
        let (s, _) = quantize_row(&x[t * k..(t + 1) * k], &mut q);
        for row in 0..n {
            let mut acc = 0i32;
            for (col, &qv) in q.iter().enumerate() {
                acc += i32::from(qv) * i32::from(w.get(row, col));
            }
            y[t * n + row] = acc as f32 / s * w.scale();
        }
    }
    Ok(y)
}
