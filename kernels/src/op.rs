//! The glue every kernel's candle op shares: argument checks that name the kernel and the
//! argument (shape, dtype, device), contiguous host slices for `cpu_fwd`, device views for
//! `cuda_fwd`, and the error for a device or dtype a kernel has no path for.
//!
//! The ops themselves live beside their kernels (`window_attention::op`, ...). Each public op
//! function checks its tensors here, converts what a kernel only takes in f32, and applies one
//! custom op whose `cpu_fwd` is the fast CPU path and whose `cuda_fwd` launches the PTX kernel.
use candle_core::{CpuStorage, DType, Device, Layout, Tensor};

use crate::error::KernelError;

/// A kernel error as a candle error (the op functions return candle's `Result`).
pub(crate) fn wrap(e: KernelError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// "cpu" or "cuda:N".
pub(crate) fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The error for a storage the op has no `*_fwd` for (Metal) or a dtype its kernel does not take.
pub(crate) fn unsupported(
    kernel: &'static str,
    device: &Device,
    dtype: DType,
) -> candle_core::Error {
    wrap(KernelError::Unsupported {
        kernel,
        device: device_name(device),
        dtype: dtype.as_str().into(),
    })
}

/// One input of an op, checked: `dims` (when given) exactly, a dtype among `dtypes`, on
/// `device`. Returns it contiguous.
pub(crate) fn checked(
    kernel: &'static str,
    arg: &'static str,
    t: &Tensor,
    dims: Option<&[usize]>,
    dtypes: &[DType],
    device: &Device,
) -> candle_core::Result<Tensor> {
    if let Some(dims) = dims {
        if t.dims() != dims {
            return Err(wrap(KernelError::Shape {
                kernel,
                arg,
                expected: format!("{dims:?}"),
                found: t.dims().to_vec(),
            }));
        }
    }
    if !dtypes.contains(&t.dtype()) {
        let expected: Vec<&str> = dtypes.iter().map(|d| d.as_str()).collect();
        return Err(wrap(KernelError::Dtype {
            kernel,
            arg,
            expected: leak_join(&expected),
            found: t.dtype().as_str().into(),
        }));
    }
    if !t.device().same_device(device) {
        return Err(wrap(KernelError::Device {
            kernel,
            arg,
            expected: device_name(device),
            found: device_name(t.device()),
        }));
    }
    t.contiguous()
}

/// The dtype list of an error message; the few distinct lists are interned once.
fn leak_join(names: &[&str]) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let joined = names.join(" or ");
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(s) = seen.get(joined.as_str()) {
        return s;
    }
    let s: &'static str = Box::leak(joined.into_boxed_str());
    seen.insert(s);
    s
}

/// The f32 elements a contiguous CPU storage holds under `layout`; an error naming the kernel and
/// argument for another dtype or layout.
pub(crate) fn cpu_f32<'a>(
    s: &'a CpuStorage,
    layout: &Layout,
    kernel: &'static str,
    arg: &'static str,
) -> candle_core::Result<&'a [f32]> {
    use candle_core::backend::BackendStorage;
    match s {
        CpuStorage::F32(data) => crate::cpu::contiguous(data, layout, kernel, arg),
        other => Err(wrap(KernelError::Dtype {
            kernel,
            arg,
            expected: "f32",
            found: other.dtype().as_str().into(),
        })),
    }
}

/// Runs `f` on the elements of an auxiliary CPU tensor (an input the op holds beside its candle
/// inputs: decays, states, masks, indices), of the dtype `T` names.
pub(crate) fn with_cpu_aux<T: candle_core::WithDType, R>(
    t: &Tensor,
    kernel: &'static str,
    arg: &'static str,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => {
            let data = s.as_slice::<T>().map_err(|_| {
                wrap(KernelError::Dtype {
                    kernel,
                    arg,
                    expected: T::DTYPE.as_str(),
                    found: t.dtype().as_str().into(),
                })
            })?;
            f(crate::cpu::contiguous(data, layout, kernel, arg)?)
        }
        _ => Err(wrap(KernelError::Device {
            kernel,
            arg,
            expected: "cpu".into(),
            found: device_name(t.device()),
        })),
    }
}

/// An op's second output (a final state): a custom op returns one tensor, so `*_fwd` leaves the
/// other here for the op function to take.
#[derive(Default)]
pub(crate) struct SideOutput(std::sync::Mutex<Option<Tensor>>);

impl SideOutput {
    pub(crate) fn set(&self, kernel: &'static str, t: Tensor) -> candle_core::Result<()> {
        *self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{kernel}: poisoned state")))? = Some(t);
        Ok(())
    }

    pub(crate) fn take(&self, kernel: &'static str) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{kernel}: poisoned state")))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{kernel}: the op produced no state")))
    }
}

/// Device views of candle's CUDA storage for `cuda_fwd`.
#[cfg(feature = "candle-cuda")]
pub(crate) mod cuda {
    use candle_core::cuda_backend::cudarc::driver::CudaView;
    use candle_core::cuda_backend::CudaDType;
    use candle_core::{CudaStorage, Layout, Storage, Tensor};

    use super::{device_name, wrap};
    use crate::error::KernelError;

    /// The elements a contiguous layout covers in a CUDA storage.
    pub(crate) fn view<'a, T: CudaDType>(
        s: &'a CudaStorage,
        l: &Layout,
        kernel: &'static str,
        arg: &'static str,
    ) -> candle_core::Result<CudaView<'a, T>> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{kernel}: `{arg}` is not contiguous"))
        })?;
        Ok(s.as_cuda_slice::<T>()?.slice(start..end))
    }

    /// The device view of an auxiliary tensor's storage (from its `storage_and_layout()`).
    pub(crate) fn aux_view<'a, T: CudaDType>(
        storage: &'a Storage,
        layout: &Layout,
        kernel: &'static str,
        arg: &'static str,
    ) -> candle_core::Result<CudaView<'a, T>> {
        match storage {
            Storage::Cuda(s) => view::<T>(s, layout, kernel, arg),
            _ => Err(wrap(KernelError::Device {
                kernel,
                arg,
                expected: "cuda".into(),
                found: "cpu".into(),
            })),
        }
    }

    /// A tensor over a device buffer `cuda_fwd` allocated (an op's side output).
    pub(crate) fn tensor(
        slice: cudarc::driver::CudaSlice<f32>,
        dev: &candle_core::CudaDevice,
        shape: impl Into<candle_core::Shape>,
    ) -> Tensor {
        Tensor::from_storage(
            Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone())),
            shape,
            candle_core::op::BackpropOp::none(),
            false,
        )
    }

    /// Runs `f` on the device view of an auxiliary tensor.
    pub(crate) fn with_aux<T: CudaDType, R>(
        t: &Tensor,
        kernel: &'static str,
        arg: &'static str,
        f: impl FnOnce(CudaView<'_, T>) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (storage, layout) = t.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => f(view::<T>(s, layout, kernel, arg)?),
            _ => Err(wrap(KernelError::Device {
                kernel,
                arg,
                expected: "cuda".into(),
                found: device_name(t.device()),
            })),
        }
    }
}

/// `x [.., cols]` (any float dtype, on the CPU) through a host GEMV over a `[rows, cols]` matrix
/// (`gemv(values, m)` gives `[m, rows]`): `[.., rows]` in f32. The output heads with their own
/// formats (`quant_head`, `compact_head`) have no GPU path: other devices are an error naming
/// theirs.
pub(crate) fn host_gemv_forward(
    kernel: &'static str,
    x: &Tensor,
    (rows, cols): (usize, usize),
    gemv: impl FnOnce(&[f32], usize) -> crate::Result<Vec<f32>>,
) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() {
        return Err(unsupported(kernel, x.device(), x.dtype()));
    }
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&cols) {
        return Err(wrap(KernelError::Shape {
            kernel,
            arg: "x",
            expected: format!("[.., {cols}]"),
            found: dims,
        }));
    }
    let m = x.elem_count() / cols;
    let values: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let y = gemv(&values, m).map_err(wrap)?;
    if let Some(last) = dims.last_mut() {
        *last = rows;
    }
    Tensor::from_vec(y, dims, &Device::Cpu)
}
