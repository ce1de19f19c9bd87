//! Additive attention as a candle op: `cpu_fwd` is the fast CPU path, `cuda_fwd` (feature
//! `candle-cuda`) the PTX kernel.
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::{additive_attention_cpu, AdditiveInput, AdditiveShape, ScoreForm, KERNEL};
use crate::error::KernelError;

/// The score layers and the padding mask of one call.
#[derive(Debug, Clone)]
pub struct AdditiveWeights<'a> {
    pub form: ScoreForm,
    pub heads: usize,
    /// `[heads, hidden]` (full) or `[heads, head_dim]` (per head); biases `[heads]`.
    pub wq: &'a Tensor,
    pub bq: Option<&'a Tensor>,
    pub wk: &'a Tensor,
    pub bk: Option<&'a Tensor>,
    /// `[batch, seq_len]` f32, 1 token / 0 padding.
    pub mask: Option<&'a Tensor>,
}

fn wrap(e: KernelError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// `u = k̄ ⊙ v` `[batch, seq_len, hidden]` for `q`, `k`, `v` `[batch, seq_len, hidden]` (f32).
pub fn additive_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    w: &AdditiveWeights<'_>,
) -> candle_core::Result<Tensor> {
    let (b, t, hidden) = q.dims3()?;
    for (arg, x) in [("k", k), ("v", v)] {
        if x.dims() != q.dims() {
            return Err(wrap(KernelError::Shape {
                kernel: KERNEL,
                arg,
                expected: format!("{:?} (the shape of q)", q.dims()),
                found: x.dims().to_vec(),
            }));
        }
    }
    if w.heads == 0 || hidden % w.heads != 0 {
        return Err(wrap(KernelError::Shape {
            kernel: KERNEL,
            arg: "q",
            expected: format!("a hidden size divisible by {} heads", w.heads),
            found: q.dims().to_vec(),
        }));
    }
    let shape = AdditiveShape::new(b, t, w.heads, hidden / w.heads).map_err(wrap)?;
    let width = match w.form {
        ScoreForm::Full => hidden,
        ScoreForm::PerHead => shape.head_dim,
    };
    let host = |t: &Tensor, arg: &'static str, dims: &[usize]| -> candle_core::Result<Vec<f32>> {
        if t.dims() != dims {
            return Err(wrap(KernelError::Shape {
                kernel: KERNEL,
                arg,
                expected: format!("{dims:?}"),
                found: t.dims().to_vec(),
            }));
        }
        t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    };
    let op = AdditiveAttention {
        shape,
        form: w.form,
        wq: host(w.wq, "wq", &[w.heads, width])?,
        bq: w.bq.map(|x| host(x, "bq", &[w.heads])).transpose()?,
        wk: host(w.wk, "wk", &[w.heads, width])?,
        bk: w.bk.map(|x| host(x, "bk", &[w.heads])).transpose()?,
        mask: w.mask.map(|x| host(x, "mask", &[b, t])).transpose()?,
    };
    for (arg, x) in [("q", q), ("k", k), ("v", v)] {
        if x.dtype() != DType::F32 {
            return Err(wrap(KernelError::Dtype {
                kernel: KERNEL,
                arg,
                expected: "f32",
                found: format!("{:?}", x.dtype()),
            }));
        }
    }
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}

struct AdditiveAttention {
    shape: AdditiveShape,
    form: ScoreForm,
    wq: Vec<f32>,
    bq: Option<Vec<f32>>,
    wk: Vec<f32>,
    bk: Option<Vec<f32>>,
    mask: Option<Vec<f32>>,
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, arg: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        other => {
            return Err(candle_core::Error::Msg(format!(
                "{KERNEL}: `{arg}` is {:?}, expected f32",
                other.dtype()
            )))
        }
    };
    crate::cpu::contiguous(data, l, KERNEL, arg)
}

impl CustomOp3 for AdditiveAttention {
    fn name(&self) -> &'static str {
        "additive-attention"
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
        let input = AdditiveInput {
            shape: self.shape,
            form: self.form,
            q: contiguous(s1, l1, "q")?,
            k: contiguous(s2, l2, "k")?,
            v: contiguous(s3, l3, "v")?,
            mask: self.mask.as_deref(),
            wq: &self.wq,
            bq: self.bq.as_deref(),
            wk: &self.wk,
            bk: self.bk.as_deref(),
        };
        let out = additive_attention_cpu(&input).map_err(wrap)?;
        Ok((CpuStorage::F32(out.u), l1.shape().clone()))
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
        use candle_core::cuda_backend::cudarc::driver::DevicePtr;
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        fn view<'a>(
            s: &'a candle_core::CudaStorage,
            l: &Layout,
            arg: &str,
        ) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>>
        {
            let (a, b) = l.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg(format!("{KERNEL}: `{arg}` is not contiguous"))
            })?;
            Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
        }
        let (q, k, v) = (view(s1, l1, "q")?, view(s2, l2, "k")?, view(s3, l3, "v")?);
        let upload = |x: &[f32]| stream.clone_htod(x).map_err(candle_core::Error::wrap);
        let (wq, wk) = (upload(&self.wq)?, upload(&self.wk)?);
        let bq = self.bq.as_deref().map(upload).transpose()?;
        let bk = self.bk.as_deref().map(upload).transpose()?;
        let mask = self.mask.as_deref().map(upload).transpose()?;
        let u = {
            let (qp, _g1) = q.device_ptr(&stream);
            let (kp, _g2) = k.device_ptr(&stream);
            let (vp, _g3) = v.device_ptr(&stream);
            let bufs = crate::gpu::additive_attention::DevicePointers {
                q: qp,
                k: kp,
                v: vp,
                mask: mask.as_ref().map(|m| m.device_ptr(&stream).0),
                wq: wq.device_ptr(&stream).0,
                bq: bq.as_ref().map(|b| b.device_ptr(&stream).0),
                wk: wk.device_ptr(&stream).0,
                bk: bk.as_ref().map(|b| b.device_ptr(&stream).0),
            };
            // SAFETY: every buffer is live on this stream's context and sized by `shape` (checked
            // when the op was built).
            unsafe { crate::gpu::additive_attention::launch(&stream, self.shape, self.form, &bufs) }
                .map_err(wrap)?
                .0
        };
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(u, dev),
            l1.shape().clone(),
        ))
    }
}
