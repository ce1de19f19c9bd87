//! The RG-LRU's two gate products (Griffin §2.4; docs/griffin.md §3): block-diagonal, one
//! `[block, block]` matrix per head laid out `[in, out]` (HF `RecurrentGemmaRglru`'s
//! `x_blk @ W[h]`), both applied to the same input.
use candle_core::Tensor;

/// `(x ⊛ w_x, x ⊛ w_a)` for `x` `[B, T, W]` and `w_x`, `w_a` `[heads, W / heads, W / heads]`: per
/// head `h`, `gate[.., h·block + j] = Σ_i x[.., h·block + i] · w[h, i, j]`. In f32 on an AVX-512
/// CPU, with more rows than a decode step, both at once on [`crate::cpu_gemm::block_diagonal_pair`]
/// (`x` read once, no transposes); anywhere else (other dtypes and devices, and decode steps,
/// where copying the weights into panels would cost more than the product: Griffin small's step
/// ran 2.97–3.20 → 3.51–3.55 ms that way) a batched matmul per gate between transposes.
pub fn block_diagonal_gates(
    x: &Tensor,
    w_x: &Tensor,
    w_a: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (bsz, t, width) = x.dims3()?;
    let (heads, block, _) = w_x.dims3()?;
    if w_a.dims() != w_x.dims() || heads * block != width {
        candle_core::bail!(
            "block_diagonal_gates: x {:?} with gate weights {:?} and {:?} (expected [heads, \
             W / heads, W / heads] for W = {width})",
            x.dims(),
            w_x.dims(),
            w_a.dims()
        );
    }
    let rows = bsz * t;
    if crate::cpu_gemm::available() && rows > crate::cpu_linear::GEMV_MAX_ROWS {
        let gates = crate::cpu::with_cpu_f32s(&[x, w_x, w_a], |v| {
            crate::cpu_gemm::block_diagonal_pair(v[0], rows, width, heads, v[1], v[2])
        });
        match gates {
            Some(Ok((gate_x, gate_a))) => {
                return Ok((
                    Tensor::from_vec(gate_x, (bsz, t, width), x.device())?,
                    Tensor::from_vec(gate_a, (bsz, t, width), x.device())?,
                ));
            }
            Some(Err(e)) => return Err(candle_core::Error::wrap(e)),
            None => {}
        }
    }
    let per_head = |w: &Tensor| -> candle_core::Result<Tensor> {
        let xb = x
            .reshape((rows, heads, block))?
            .transpose(0, 1)?
            .contiguous()?;
        xb.matmul(w)?.transpose(0, 1)?.reshape((bsz, t, width))
    };
    Ok((per_head(w_x)?, per_head(w_a)?))
}
