//! Window attention as a candle op: `cpu_fwd` is the fast CPU path ([`window_attention_cpu`]),
//! `cuda_fwd` (feature `candle-cuda`) the PTX kernel. The positional form (an explicit position
//! per query and key) has a CPU kernel only; on other devices it runs as masked tensor ops.
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::{
    positional_attention_cpu, window_attention_cpu, PositionalInput, WindowInput, WindowShape,
    KERNEL,
};
use crate::cpu::KvElem;
use crate::op::{checked, cpu_f32, unsupported, wrap};

/// Where the queries and keys sit and what a query sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpec {
    /// Absolute position of query 0.
    pub q_offset: usize,
    /// Absolute position of key 0.
    pub k_offset: usize,
    /// Keys a query sees, itself included; `None`: every earlier key (causal).
    pub window: Option<usize>,
    /// Multiplies the scores (usually `head_dim^-0.5`).
    pub scale: f32,
}

const FLOATS: &[DType] = &[DType::F32, DType::BF16, DType::F16];

/// `o [batch, q_len, heads, head_dim]` for `q` of that shape and `k`, `v`
/// `[batch, k_len, kv_heads, head_dim]` (f32, bf16 or f16; `k` and `v` of one dtype, `q` of
/// any). The kernel computes in f32 and `o` comes back in `q`'s dtype. On the CPU, f16 or bf16
/// keys and values (a half-precision KV cache) are read as they are and widened a block at a
/// time; elsewhere they are converted to f32 first.
pub fn window_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: &WindowSpec,
) -> candle_core::Result<Tensor> {
    let dev = q.device();
    let q = checked(KERNEL, "q", q, None, FLOATS, dev)?;
    let (batch, q_len, heads, head_dim) = q.dims4()?;
    let k = checked(KERNEL, "k", k, None, FLOATS, dev)?;
    let (kb, k_len, kv_heads, kd) = k.dims4()?;
    if kb != batch || kd != head_dim {
        return Err(wrap(crate::KernelError::Shape {
            kernel: KERNEL,
            arg: "k",
            expected: format!("[{batch}, k_len, kv_heads, {head_dim}] (batch and head_dim of q)"),
            found: k.dims().to_vec(),
        }));
    }
    let v = checked(KERNEL, "v", v, Some(k.dims()), &[k.dtype()], dev)?;
    let shape = WindowShape {
        batch,
        q_len,
        k_len,
        heads,
        kv_heads,
        head_dim,
        q_offset: spec.q_offset,
        k_offset: spec.k_offset,
        window: spec.window,
    };
    shape.validate().map_err(wrap)?;
    let dtype = q.dtype();
    let f32s = |t: Tensor| t.to_dtype(DType::F32);
    let op = WindowAttention {
        shape,
        scale: spec.scale,
    };
    let half_kv_on_cpu = dev.is_cpu() && matches!(k.dtype(), DType::F16 | DType::BF16);
    let (k, v) = if half_kv_on_cpu {
        (k, v)
    } else {
        (f32s(k)?, f32s(v)?)
    };
    let o = f32s(q)?.apply_op3_no_bwd(&k, &v, &op)?;
    o.to_dtype(dtype)
}

/// The fast CPU path over keys and values of any [`KvElem`] dtype.
fn window_cpu<E: KvElem>(
    op: &WindowAttention,
    q: &[f32],
    (k, l2): (&[E], &Layout),
    (v, l3): (&[E], &Layout),
) -> candle_core::Result<Vec<f32>> {
    window_attention_cpu(&WindowInput {
        shape: op.shape,
        q,
        k: crate::cpu::contiguous(k, l2, KERNEL, "k")?,
        v: crate::cpu::contiguous(v, l3, KERNEL, "v")?,
        scale: op.scale,
    })
    .map_err(wrap)
}

struct WindowAttention {
    shape: WindowShape,
    scale: f32,
}

impl CustomOp3 for WindowAttention {
    fn name(&self) -> &'static str {
        "window-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = cpu_f32(s1, l1, KERNEL, "q")?;
        let o = match (s2, s3) {
            (CpuStorage::F32(k), CpuStorage::F32(v)) => window_cpu(self, q, (k, l2), (v, l3))?,
            (CpuStorage::F16(k), CpuStorage::F16(v)) => window_cpu(self, q, (k, l2), (v, l3))?,
            (CpuStorage::BF16(k), CpuStorage::BF16(v)) => window_cpu(self, q, (k, l2), (v, l3))?,
            _ => {
                use candle_core::backend::BackendStorage;
                return Err(wrap(crate::KernelError::Dtype {
                    kernel: KERNEL,
                    arg: "v",
                    expected: "the dtype of k (f32, f16 or bf16)",
                    found: s3.dtype().as_str().into(),
                }));
            }
        };
        Ok((CpuStorage::F32(o), l1.shape().clone()))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        use crate::op::cuda::view;
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        let o = crate::gpu::window_attention::window_attention_gpu(
            &stream,
            self.shape,
            &view::<f32>(s1, l1, KERNEL, "q")?,
            &view::<f32>(s2, l2, KERNEL, "k")?,
            &view::<f32>(s3, l3, KERNEL, "v")?,
            self.scale,
        )
        .map_err(wrap)?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(o, dev),
            l1.shape().clone(),
        ))
    }
}

/// Window attention with an explicit position per query (`q_pos [batch, q_len]`) and key
/// (`k_pos [batch, k_len]`, -1 for an empty slot): query i sees key j iff
/// `0 ≤ k_pos_j ≤ q_pos_i` and `q_pos_i − k_pos_j < window`. For ring-buffer caches and padded
/// batches. A query with no visible key (padding, position -1) gets zeros.
///
/// On the CPU in f32 this is one online-softmax pass per query ([`positional_attention_cpu`]);
/// elsewhere (other dtypes, GPUs) it runs as masked tensor ops (scores, mask, softmax in f32).
pub fn positional_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_pos: &[i64],
    k_pos: &[i64],
    window: usize,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let dev = q.device();
    let q = checked(KERNEL, "q", q, None, FLOATS, dev)?;
    let (batch, q_len, heads, head_dim) = q.dims4()?;
    let k = checked(KERNEL, "k", k, None, FLOATS, dev)?;
    let (_, k_len, kv_heads, _) = k.dims4()?;
    let v = checked(KERNEL, "v", v, Some(k.dims()), &[k.dtype()], dev)?;
    let input = PositionalInput {
        batch,
        q_len,
        k_len,
        heads,
        kv_heads,
        head_dim,
        window,
        q: &[],
        k: &[],
        v: &[],
        q_pos,
        k_pos,
        scale,
    };
    input.validate_shape().map_err(wrap)?;
    if dev.is_cpu() && q.dtype() == DType::F32 {
        let out = crate::cpu::with_cpu_f32s(&[&q, &k, &v], |s| {
            positional_attention_cpu(&PositionalInput {
                q: s[0],
                k: s[1],
                v: s[2],
                ..input
            })
        })
        .ok_or_else(|| unsupported(KERNEL, dev, q.dtype()))?
        .map_err(wrap)?;
        return Tensor::from_vec(out, q.shape(), dev);
    }
    positional_attention_tensors(&q, &k, &v, q_pos, k_pos, window, scale)
}

/// [`positional_attention`] as tensor ops on any device (the path on GPUs and in bf16): scores in
/// f32, an additive mask, softmax. Inputs as [`positional_attention`]'s.
pub fn positional_attention_tensors(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_pos: &[i64],
    k_pos: &[i64],
    window: usize,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let (b, t, h, d) = q.dims4()?;
    let (_, n, hk, _) = k.dims4()?;
    let s = PositionalInput {
        batch: b,
        q_len: t,
        k_len: n,
        heads: h,
        kv_heads: hk,
        head_dim: d,
        window,
        q: &[],
        k: &[],
        v: &[],
        q_pos,
        k_pos,
        scale,
    };
    s.validate_shape().map_err(wrap)?;
    let w = s.window as i64;
    let mut mask = vec![f32::NEG_INFINITY; b * t * n];
    let mut any = vec![0f32; b * t];
    for bi in 0..b {
        for ti in 0..t {
            let qp = s.q_pos[bi * t + ti];
            let row = &mut mask[(bi * t + ti) * n..(bi * t + ti + 1) * n];
            for (si, &kp) in s.k_pos[bi * n..(bi + 1) * n].iter().enumerate() {
                if qp >= 0 && kp >= 0 && kp <= qp && qp - kp < w {
                    row[si] = 0.0;
                    any[bi * t + ti] = 1.0;
                }
            }
            if any[bi * t + ti] == 0.0 {
                row.fill(0.0); // a finite softmax, zeroed below
            }
        }
    }
    let dev = q.device();
    let mask = Tensor::from_vec(mask, (b, 1, 1, t, n), dev)?;
    let any = Tensor::from_vec(any, (b, t, 1, 1), dev)?;
    // Grouped heads: query head j reads KV head j / (heads / kv_heads).
    let g = h / hk;
    let f32s = |x: &Tensor| x.to_dtype(DType::F32);
    let qh = f32s(q)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, hk, g * t, d))?;
    let kh = f32s(k)?.transpose(1, 2)?.contiguous()?;
    let vh = f32s(v)?.transpose(1, 2)?.contiguous()?;
    let scores = (qh.matmul(&kh.t()?)? * f64::from(s.scale))?
        .reshape((b, hk, g, t, n))?
        .broadcast_add(&mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, hk, g * t, n))?;
    let o = probs
        .matmul(&vh)?
        .reshape((b, h, t, d))?
        .transpose(1, 2)?
        .broadcast_mul(&any)?;
    o.contiguous()?.to_dtype(q.dtype())
}
