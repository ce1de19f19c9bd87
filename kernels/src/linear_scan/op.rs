//! The scan as a candle op: `cpu_fwd` is the fast CPU path, `cuda_fwd` (feature `candle-cuda`)
//! the PTX kernel on candle's CUDA storage.
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

use super::{linear_scan_cpu, ScanElement, ScanInput, ScanShape, KERNEL};
use crate::error::KernelError;

/// Scans `x` with decay `a` (both `[batch, seq_len, channels]`, f32 or bf16, same dtype), from
/// `h0` (`[batch, channels]`, f32; zeros when `None`), restarting where `reset` (`[batch, seq_len]`,
/// u8) is nonzero. Returns `h` (dtype of `x`) and the final state (`[batch, channels]`, f32).
pub fn linear_scan(
    a: &Tensor,
    x: &Tensor,
    h0: Option<&Tensor>,
    reset: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let shape = scan_shape(a, x)?;
    let op = LinearScan {
        shape,
        h0: h0
            .map(|t| {
                expect(
                    t,
                    "h0",
                    DType::F32,
                    &[shape.batch, shape.channels],
                    x.device(),
                )
            })
            .transpose()?,
        reset: reset
            .map(|t| {
                expect(
                    t,
                    "reset",
                    DType::U8,
                    &[shape.batch, shape.seq_len],
                    x.device(),
                )
            })
            .transpose()?,
        h_last: Mutex::new(None),
    };
    let h = a.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &op)?;
    let h_last = op
        .h_last
        .lock()
        .map_err(|_| candle_core::Error::Msg("linear_scan: poisoned state".into()))?
        .take()
        .ok_or_else(|| {
            candle_core::Error::Msg("linear_scan: the op produced no final state".into())
        })?;
    Ok((h, h_last))
}

fn wrap(e: KernelError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

fn scan_shape(a: &Tensor, x: &Tensor) -> candle_core::Result<ScanShape> {
    let dims = x.dims();
    if dims.len() != 3 {
        return Err(wrap(KernelError::Shape {
            kernel: KERNEL,
            arg: "x",
            expected: "[batch, seq_len, channels]".into(),
            found: dims.to_vec(),
        }));
    }
    if a.dims() != dims {
        return Err(wrap(KernelError::Shape {
            kernel: KERNEL,
            arg: "a",
            expected: format!("{dims:?} (the shape of x)"),
            found: a.dims().to_vec(),
        }));
    }
    for (arg, t) in [("a", a), ("x", x)] {
        if !matches!(t.dtype(), DType::F32 | DType::BF16) || t.dtype() != x.dtype() {
            return Err(wrap(KernelError::Dtype {
                kernel: KERNEL,
                arg,
                expected: "f32 or bf16, the same for a and x",
                found: format!("{:?}", t.dtype()),
            }));
        }
    }
    if !a.device().same_device(x.device()) {
        return Err(wrap(device_error("a", x.device(), a.device())));
    }
    ScanShape::new(dims[0], dims[1], dims[2]).map_err(wrap)
}

fn device_error(arg: &'static str, expected: &Device, found: &Device) -> KernelError {
    KernelError::Device {
        kernel: KERNEL,
        arg,
        expected: format!("{:?}", expected.location()),
        found: format!("{:?}", found.location()),
    }
}

/// Checks an auxiliary input and makes it contiguous.
fn expect(
    t: &Tensor,
    arg: &'static str,
    dtype: DType,
    dims: &[usize],
    device: &Device,
) -> candle_core::Result<Tensor> {
    if t.dims() != dims {
        return Err(wrap(KernelError::Shape {
            kernel: KERNEL,
            arg,
            expected: format!("{dims:?}"),
            found: t.dims().to_vec(),
        }));
    }
    if t.dtype() != dtype {
        return Err(wrap(KernelError::Dtype {
            kernel: KERNEL,
            arg,
            expected: dtype.as_str(),
            found: format!("{:?}", t.dtype()),
        }));
    }
    if !t.device().same_device(device) {
        return Err(wrap(device_error(arg, device, t.device())));
    }
    t.contiguous()
}

struct LinearScan {
    shape: ScanShape,
    h0: Option<Tensor>,
    reset: Option<Tensor>,
    /// The final state, handed back to [`linear_scan`] (a custom op has a single output).
    h_last: Mutex<Option<Tensor>>,
}

impl LinearScan {
    fn keep_state(&self, t: Tensor) -> candle_core::Result<()> {
        *self
            .h_last
            .lock()
            .map_err(|_| candle_core::Error::Msg("linear_scan: poisoned state".into()))? = Some(t);
        Ok(())
    }

    fn cpu<T: ScanElement>(&self, a: &[T], x: &[T]) -> candle_core::Result<Vec<T>> {
        let h0 = self
            .h0
            .as_ref()
            .map(|t| t.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        let reset = self
            .reset
            .as_ref()
            .map(|t| t.flatten_all()?.to_vec1::<u8>())
            .transpose()?;
        let input = ScanInput {
            shape: self.shape,
            a,
            x,
            h0: h0.as_deref(),
            reset: reset.as_deref(),
        };
        let out = linear_scan_cpu(&input).map_err(wrap)?;
        self.keep_state(Tensor::from_vec(
            out.h_last,
            (self.shape.batch, self.shape.channels),
            &Device::Cpu,
        )?)?;
        Ok(out.h)
    }
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, arg: &str) -> candle_core::Result<&'a [T]> {
    crate::cpu::contiguous(data, layout, KERNEL, arg)
}

impl CustomOp2 for LinearScan {
    fn name(&self) -> &'static str {
        "linear-scan"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out_shape = l2.shape().clone();
        let h = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(x)) => {
                CpuStorage::F32(self.cpu(contiguous(a, l1, "a")?, contiguous(x, l2, "x")?)?)
            }
            (CpuStorage::BF16(a), CpuStorage::BF16(x)) => {
                CpuStorage::BF16(self.cpu(contiguous(a, l1, "a")?, contiguous(x, l2, "x")?)?)
            }
            _ => {
                return Err(wrap(KernelError::Dtype {
                    kernel: KERNEL,
                    arg: "a, x",
                    expected: "f32 or bf16, the same for a and x",
                    found: format!("{:?} and {:?}", s1.dtype(), s2.dtype()),
                }))
            }
        };
        Ok((h, out_shape))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::forward(self, s1, l1, s2, l2)
    }
}

#[cfg(feature = "candle-cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DeviceRepr, ValidAsZeroBits};
    use candle_core::cuda_backend::CudaDType;
    use candle_core::op::BackpropOp;
    use candle_core::{CudaStorage, DType, Layout, Shape, Storage, Tensor};

    use super::{wrap, LinearScan, KERNEL};
    use crate::gpu::linear_scan::{launch_linear_scan, scan_params};
    use crate::linear_scan::ScanElement;

    fn view<'a, T: CudaDType>(
        s: &'a CudaStorage,
        l: &Layout,
        arg: &str,
    ) -> candle_core::Result<cudarc::driver::CudaView<'a, T>> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{KERNEL}: `{arg}` is not contiguous"))
        })?;
        Ok(s.as_cuda_slice::<T>()?.slice(start..end))
    }

    fn run<T: ScanElement + CudaDType + DeviceRepr + ValidAsZeroBits>(
        op: &LinearScan,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<CudaStorage> {
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        let shape = op.shape;
        let a = view::<T>(s1, l1, "a")?;
        let x = view::<T>(s2, l2, "x")?;
        let h = stream
            .alloc_zeros::<T>(shape.len())
            .map_err(candle_core::Error::wrap)?;
        let h_last = stream
            .alloc_zeros::<f32>(shape.state_len())
            .map_err(candle_core::Error::wrap)?;
        let h0 = op.h0.as_ref().map(|t| t.storage_and_layout());
        let reset = op.reset.as_ref().map(|t| t.storage_and_layout());
        let h0_view = match &h0 {
            Some((s, l)) => match &**s {
                Storage::Cuda(s) => Some(view::<f32>(s, l, "h0")?),
                _ => {
                    return Err(candle_core::Error::Msg(format!(
                        "{KERNEL}: `h0` is not on the GPU"
                    )))
                }
            },
            None => None,
        };
        let reset_view = match &reset {
            Some((s, l)) => match &**s {
                Storage::Cuda(s) => Some(view::<u8>(s, l, "reset")?),
                _ => {
                    return Err(candle_core::Error::Msg(format!(
                        "{KERNEL}: `reset` is not on the GPU"
                    )))
                }
            },
            None => None,
        };
        {
            let (a_ptr, _ga) = a.device_ptr(&stream);
            let (x_ptr, _gx) = x.device_ptr(&stream);
            let h0_ptr = h0_view.as_ref().map(|v| v.device_ptr(&stream));
            let reset_ptr = reset_view.as_ref().map(|v| v.device_ptr(&stream));
            let (h_ptr, _gh) = h.device_ptr(&stream);
            let (last_ptr, _gl) = h_last.device_ptr(&stream);
            let params = scan_params(
                a_ptr,
                x_ptr,
                h0_ptr.as_ref().map(|(p, _)| *p),
                reset_ptr.as_ref().map(|(p, _)| *p),
                h_ptr,
                last_ptr,
            );
            // SAFETY: all buffers are live on this stream's context, sized by `shape` (checked
            // when the op was built), in the dtype T says.
            unsafe { launch_linear_scan(&stream, shape, T::DTYPE, params) }.map_err(wrap)?;
        }
        let state = CudaStorage::wrap_cuda_slice(h_last, dev.clone());
        op.keep_state(Tensor::from_storage(
            Storage::Cuda(state),
            (shape.batch, shape.channels),
            BackpropOp::none(),
            false,
        ))?;
        Ok(CudaStorage::wrap_cuda_slice(h, dev))
    }

    pub(super) fn forward(
        op: &LinearScan,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let h = match (s1.dtype(), s2.dtype()) {
            (DType::F32, DType::F32) => run::<f32>(op, s1, l1, s2, l2)?,
            (DType::BF16, DType::BF16) => run::<half::bf16>(op, s1, l1, s2, l2)?,
            (d1, d2) => {
                return Err(candle_core::Error::Msg(format!(
                    "{KERNEL}: a and x must both be f32 or bf16, got {d1:?} and {d2:?}"
                )))
            }
        };
        Ok((h, l2.shape().clone()))
    }
}
