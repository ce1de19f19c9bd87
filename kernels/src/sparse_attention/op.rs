//! Smart Bird's selection and sparse attention as candle ops: `cpu_fwd` is the fast CPU path
//! ([`sketch_topk_cpu`], [`sparse_attention_cpu`]), `cuda_fwd` (feature `candle-cuda`) the PTX
//! kernels.
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};

use super::{sketch_topk_cpu, sparse_attention_cpu, SketchTopk, SparseInput, SparseShape, KERNEL};
use crate::op::{checked, cpu_f32, with_cpu_aux, wrap};

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub heads: usize,
    /// Keys per query.
    pub keys: usize,
    /// `Some(seed)`: Gumbel-top-K (training-time sampling); `None`: deterministic top-K.
    pub gumbel_seed: Option<u64>,
    /// Every token keeps itself among its keys.
    pub include_self: bool,
}

/// The `keys` keys each (batch, head, query) attends to, `[batch, heads, seq_len, keys]` (i32,
/// -1 for an empty slot), from the sketch's `log_probs` `[batch, seq_len, seq_len]` (f32) and the
/// token mask `[batch, seq_len]` (u8, nonzero for tokens).
pub fn sketch_topk(
    log_probs: &Tensor,
    mask: Option<&Tensor>,
    sel: &Selection,
) -> candle_core::Result<Tensor> {
    let dev = log_probs.device();
    let lp = checked(KERNEL, "log_probs", log_probs, None, &[DType::F32], dev)?;
    let (b, n, n2) = lp.dims3()?;
    let lp = checked(
        KERNEL,
        "log_probs",
        &lp,
        Some(&[b, n, n]),
        &[DType::F32],
        dev,
    )?;
    let _ = n2;
    let mask = mask
        .map(|m| checked(KERNEL, "mask", m, Some(&[b, n]), &[DType::U8], dev))
        .transpose()?;
    let shape = SparseShape::new(b, n, sel.heads, 1, sel.keys).map_err(wrap)?;
    lp.apply_op1_no_bwd(&SketchTopkOp {
        shape,
        mask,
        sel: *sel,
    })
}

struct SketchTopkOp {
    shape: SparseShape,
    mask: Option<Tensor>,
    sel: Selection,
}

impl SketchTopkOp {
    fn out_shape(&self) -> Shape {
        let s = self.shape;
        Shape::from((s.batch, s.heads, s.seq_len, s.keys))
    }
}

impl CustomOp1 for SketchTopkOp {
    fn name(&self) -> &'static str {
        "sketch-topk"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let log_probs = cpu_f32(s, l, KERNEL, "log_probs")?;
        let run = |mask: Option<&[u8]>| {
            sketch_topk_cpu(&SketchTopk {
                batch: self.shape.batch,
                seq_len: self.shape.seq_len,
                heads: self.sel.heads,
                keys: self.sel.keys,
                log_probs,
                mask,
                gumbel_seed: self.sel.gumbel_seed,
                include_self: self.sel.include_self,
            })
            .map_err(wrap)
        };
        let idx = match &self.mask {
            Some(m) => with_cpu_aux::<u8, _>(m, KERNEL, "mask", |m| run(Some(m)))?,
            None => run(None)?,
        };
        Ok((CpuStorage::I32(idx), self.out_shape()))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        use crate::op::cuda::{view, with_aux};
        let dev = s.device().clone();
        let stream = dev.cuda_stream();
        let lp = view::<f32>(s, l, KERNEL, "log_probs")?;
        let run = |mask: Option<&cudarc::driver::CudaView<'_, u8>>| {
            crate::gpu::sparse_attention::sketch_topk_gpu(
                &stream,
                self.shape,
                &lp,
                mask,
                self.sel.gumbel_seed,
                self.sel.include_self,
            )
            .map_err(wrap)
        };
        let idx = match &self.mask {
            Some(m) => with_aux::<u8, _>(m, KERNEL, "mask", |m| run(Some(&m)))?,
            None => run(None)?,
        };
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(idx, dev),
            self.out_shape(),
        ))
    }
}

const FLOATS: &[DType] = &[DType::F32, DType::BF16, DType::F16];

/// `o [batch, seq_len, heads, head_dim]` (in `q`'s dtype): each query's softmax attention over
/// the keys `indices` `[batch, heads, seq_len, keys]` (i32, from [`sketch_topk`]) name, for `q`,
/// `k`, `v` `[batch, seq_len, heads, head_dim]`.
pub fn sparse_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    indices: &Tensor,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let dev = q.device();
    let q = checked(KERNEL, "q", q, None, FLOATS, dev)?;
    let (b, n, h, d) = q.dims4()?;
    let k = checked(KERNEL, "k", k, Some(q.dims()), &[q.dtype()], dev)?;
    let v = checked(KERNEL, "v", v, Some(q.dims()), &[q.dtype()], dev)?;
    let keys = indices.dims().last().copied().unwrap_or(0);
    let indices = checked(
        KERNEL,
        "indices",
        indices,
        Some(&[b, h, n, keys]),
        &[DType::I32],
        dev,
    )?;
    let shape = SparseShape::new(b, n, h, d, keys).map_err(wrap)?;
    let f32s = |x: &Tensor| x.to_dtype(DType::F32);
    let op = SparseAttentionOp {
        shape,
        indices,
        scale,
    };
    f32s(&q)?
        .apply_op3_no_bwd(&f32s(&k)?, &f32s(&v)?, &op)?
        .to_dtype(q.dtype())
}

struct SparseAttentionOp {
    shape: SparseShape,
    indices: Tensor,
    scale: f32,
}

impl CustomOp3 for SparseAttentionOp {
    fn name(&self) -> &'static str {
        "sparse-attention"
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
        let o = with_cpu_aux::<i32, _>(&self.indices, KERNEL, "indices", |indices| {
            sparse_attention_cpu(&SparseInput {
                shape: self.shape,
                q: cpu_f32(s1, l1, KERNEL, "q")?,
                k: cpu_f32(s2, l2, KERNEL, "k")?,
                v: cpu_f32(s3, l3, KERNEL, "v")?,
                indices,
                scale: self.scale,
            })
            .map_err(wrap)
        })?;
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

        use crate::op::cuda::{view, with_aux};
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        let o = with_aux::<i32, _>(&self.indices, KERNEL, "indices", |idx| {
            crate::gpu::sparse_attention::sparse_attention_gpu(
                &stream,
                self.shape,
                &view::<f32>(s1, l1, KERNEL, "q")?,
                &view::<f32>(s2, l2, KERNEL, "k")?,
                &view::<f32>(s3, l3, KERNEL, "v")?,
                &idx,
                self.scale,
            )
            .map_err(wrap)
        })?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(o, dev),
            l1.shape().clone(),
        ))
    }
}
