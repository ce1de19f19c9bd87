//! Gated retention as a candle op: `cpu_fwd` is the chunkwise CPU path
//! ([`gated_retention_cpu`]), `cuda_fwd` (feature `candle-cuda`) the PTX kernel. The decay and
//! the carried state ride along in the op; the new state comes back beside `o`.
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};

use super::{gated_retention_cpu, RetentionInput, RetentionShape, KERNEL};
use crate::op::{checked, cpu_f32, with_cpu_aux, wrap, SideOutput};

const FLOATS: &[DType] = &[DType::F32, DType::BF16, DType::F16];

/// `o [batch, seq_len, heads, dv]` (in `q`'s dtype) and the state after the last token
/// (`[batch, heads, dk, dv]`, f32) for `q`, `k` `[batch, seq_len, heads, dk]` (`k` already
/// scaled), `v` `[batch, seq_len, heads, dv]`, `log_decay` `[batch, seq_len, heads]` (≤ 0) and
/// the state before the first token (zeros when `None`).
pub fn gated_retention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    log_decay: &Tensor,
    state: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = q.device();
    let q = checked(KERNEL, "q", q, None, FLOATS, dev)?;
    let (b, t, h, dk) = q.dims4()?;
    let k = checked(KERNEL, "k", k, Some(q.dims()), &[q.dtype()], dev)?;
    let v = checked(KERNEL, "v", v, None, &[q.dtype()], dev)?;
    let dv = v.dims().last().copied().unwrap_or(0);
    let v = checked(KERNEL, "v", &v, Some(&[b, t, h, dv]), &[q.dtype()], dev)?;
    let shape = RetentionShape::new(b, t, h, dk, dv).map_err(wrap)?;
    let f32s = |x: &Tensor| x.to_dtype(DType::F32);
    let log_decay = checked(
        KERNEL,
        "log_decay",
        log_decay,
        Some(&[b, t, h]),
        FLOATS,
        dev,
    )?;
    let state = state
        .map(|s| {
            checked(
                KERNEL,
                "state",
                s,
                Some(&[b, h, dk, dv]),
                &[DType::F32],
                dev,
            )
        })
        .transpose()?;
    let op = GatedRetention {
        shape,
        log_decay: f32s(&log_decay)?,
        state,
        state_out: SideOutput::default(),
    };
    let o = f32s(&q)?.apply_op3_no_bwd(&f32s(&k)?, &f32s(&v)?, &op)?;
    Ok((o.to_dtype(q.dtype())?, op.state_out.take(KERNEL)?))
}

struct GatedRetention {
    shape: RetentionShape,
    log_decay: Tensor,
    state: Option<Tensor>,
    /// The state after the last token (a custom op has a single output).
    state_out: SideOutput,
}

impl GatedRetention {
    fn state_shape(&self) -> (usize, usize, usize, usize) {
        let s = self.shape;
        (s.batch, s.heads, s.dk, s.dv)
    }
}

impl CustomOp3 for GatedRetention {
    fn name(&self) -> &'static str {
        "gated-retention"
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
        let s = self.shape;
        let out = with_cpu_aux::<f32, _>(&self.log_decay, KERNEL, "log_decay", |log_decay| {
            let run = |state: Option<&[f32]>| {
                gated_retention_cpu(&RetentionInput {
                    shape: s,
                    q: cpu_f32(s1, l1, KERNEL, "q")?,
                    k: cpu_f32(s2, l2, KERNEL, "k")?,
                    v: cpu_f32(s3, l3, KERNEL, "v")?,
                    log_decay,
                    state,
                })
                .map_err(wrap)
            };
            match &self.state {
                Some(st) => with_cpu_aux::<f32, _>(st, KERNEL, "state", |st| run(Some(st))),
                None => run(None),
            }
        })?;
        self.state_out.set(
            KERNEL,
            Tensor::from_vec(out.state, self.state_shape(), &Device::Cpu)?,
        )?;
        Ok((
            CpuStorage::F32(out.o),
            Shape::from((s.batch, s.seq_len, s.heads, s.dv)),
        ))
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
        use candle_core::CudaStorage;

        use crate::op::cuda::{view, with_aux};
        let s = self.shape;
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        let (q, k, v) = (
            view::<f32>(s1, l1, KERNEL, "q")?,
            view::<f32>(s2, l2, KERNEL, "k")?,
            view::<f32>(s3, l3, KERNEL, "v")?,
        );
        let (o, state) = with_aux::<f32, _>(&self.log_decay, KERNEL, "log_decay", |g| {
            let run = |st: Option<&cudarc::driver::CudaView<'_, f32>>| {
                crate::gpu::gated_retention::gated_retention_gpu(&stream, s, &q, &k, &v, &g, st)
                    .map_err(wrap)
            };
            match &self.state {
                Some(st) => with_aux::<f32, _>(st, KERNEL, "state", |st| run(Some(&st))),
                None => run(None),
            }
        })?;
        self.state_out.set(
            KERNEL,
            crate::op::cuda::tensor(state, &dev, self.state_shape()),
        )?;
        Ok((
            CudaStorage::wrap_cuda_slice(o, dev),
            Shape::from((s.batch, s.seq_len, s.heads, s.dv)),
        ))
    }
}
