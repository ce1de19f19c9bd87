//! Ternary matmul as a candle op, with the packed weights held where the model runs: the CPU keeps
//! the [`PackedTernary`] matrix (`cpu_fwd`: the fast CPU path), a GPU keeps its bytes as a u8
//! tensor on the device (`cuda_fwd`, feature `candle-cuda`: quantisation and the `__dp4a`
//! GEMV/GEMM). Either way the weights stay packed at 2 bits from load to matmul.
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::{
    quantize_activations, ternary_matmul_quantized, ternary_matmul_quantized_many, PackedTernary,
    KERNEL,
};
use crate::op::{checked, cpu_f32, device_name, wrap};

/// Where the packed bytes live.
#[derive(Debug, Clone)]
enum Placement {
    Host(PackedTernary),
    /// `[n, k_padded / 4]` u8 on a GPU.
    Device(Tensor),
}

/// A packed ternary (or binary) weight matrix `[n, k]` placed on a device.
#[derive(Debug, Clone)]
pub struct TernaryWeights {
    n: usize,
    k: usize,
    k_padded: usize,
    scale: f32,
    place: Placement,
}

impl TernaryWeights {
    /// Places `w` on `device`: kept as it is for the CPU, its bytes copied once for a GPU.
    pub fn new(w: PackedTernary, device: &Device) -> candle_core::Result<Self> {
        let (n, k, k_padded, scale) = (w.n(), w.k(), w.k_padded(), w.scale());
        let place = if device.is_cpu() {
            Placement::Host(w)
        } else {
            let bytes = Tensor::from_slice(w.bytes(), (n, k_padded / 4), &Device::Cpu)?;
            Placement::Device(bytes.to_device(device)?)
        };
        Ok(TernaryWeights {
            n,
            k,
            k_padded,
            scale,
            place,
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The dequantisation scale `β`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The packed matrix, when it lives on the CPU.
    pub fn packed(&self) -> Option<&PackedTernary> {
        match &self.place {
            Placement::Host(w) => Some(w),
            Placement::Device(_) => None,
        }
    }

    /// Bytes the packed weights and their f32 scale take.
    pub fn memory_bytes(&self) -> usize {
        self.n * self.k_padded / 4 + std::mem::size_of::<f32>()
    }

    pub fn device(&self) -> Device {
        match &self.place {
            Placement::Host(_) => Device::Cpu,
            Placement::Device(t) => t.device().clone(),
        }
    }
}

const FLOATS: &[DType] = &[DType::F32, DType::BF16, DType::F16];

/// Checks `x [..., k]` against the weights; returns it as f32 `[m, k]` and the output dims.
fn prepare(x: &Tensor, w: &TernaryWeights) -> candle_core::Result<(Tensor, Vec<usize>)> {
    let x = checked(KERNEL, "x", x, None, FLOATS, x.device())?;
    if x.dims().last() != Some(&w.k) {
        return Err(wrap(crate::KernelError::Shape {
            kernel: KERNEL,
            arg: "x",
            expected: format!("[..., {}] (the weights' input features)", w.k),
            found: x.dims().to_vec(),
        }));
    }
    if !x.device().same_device(&w.device()) {
        return Err(wrap(crate::KernelError::Device {
            kernel: KERNEL,
            arg: "x",
            expected: format!("{} (where the weights are)", device_name(&w.device())),
            found: device_name(x.device()),
        }));
    }
    let m = x.elem_count() / w.k;
    let mut out = x.dims().to_vec();
    if let Some(last) = out.last_mut() {
        *last = w.n;
    }
    Ok((x.to_dtype(DType::F32)?.reshape((m, w.k))?, out))
}

/// `y = x · Wᵀ` `[..., n]` for `x [..., k]` (f32, bf16 or f16; quantised per token to int8 inside,
/// `y` in `x`'s dtype).
pub fn ternary_matmul(x: &Tensor, w: &TernaryWeights) -> candle_core::Result<Tensor> {
    let (x2, out) = prepare(x, w)?;
    x2.apply_op1_no_bwd(&TernaryMatmul { w })?
        .reshape(out)?
        .to_dtype(x.dtype())
}

/// Several matrices reading the same input (q/k/v, gate/up): on the CPU the input is quantised
/// once for all of them, and all their rows run in one parallel loop
/// ([`ternary_matmul_quantized_many`]).
pub fn ternary_matmul_shared(
    x: &Tensor,
    ws: &[&TernaryWeights],
) -> candle_core::Result<Vec<Tensor>> {
    let Some(first) = ws.first() else {
        return Ok(vec![]);
    };
    let host: Option<Vec<&PackedTernary>> = ws.iter().map(|w| w.packed()).collect();
    let same_k = ws.iter().all(|w| w.k == first.k);
    match host {
        Some(packed) if same_k && x.device().is_cpu() => {
            let (x2, out) = prepare(x, first)?;
            let m = x2.dims()[0];
            let qa = crate::cpu::with_cpu_f32(&x2, |data| quantize_activations(data, m, packed[0]))
                .ok_or_else(|| crate::op::unsupported(KERNEL, x.device(), x2.dtype()))?
                .map_err(wrap)?;
            // All the matrices' rows in one parallel loop (one wait for the pool per group).
            let ys = ternary_matmul_quantized_many(&qa, &packed).map_err(wrap)?;
            packed
                .iter()
                .zip(ys)
                .map(|(w, y)| {
                    let mut dims = out.clone();
                    if let Some(last) = dims.last_mut() {
                        *last = w.n();
                    }
                    Tensor::from_vec(y, dims, x.device())?.to_dtype(x.dtype())
                })
                .collect()
        }
        _ => ws.iter().map(|w| ternary_matmul(x, w)).collect(),
    }
}

struct TernaryMatmul<'a> {
    w: &'a TernaryWeights,
}

impl CustomOp1 for TernaryMatmul<'_> {
    fn name(&self) -> &'static str {
        "ternary-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, KERNEL, "x")?;
        let m = x.len() / self.w.k;
        let packed = self.w.packed().ok_or_else(|| {
            wrap(crate::KernelError::Device {
                kernel: KERNEL,
                arg: "weights",
                expected: "cpu (where x is)".into(),
                found: device_name(&self.w.device()),
            })
        })?;
        let qa = quantize_activations(x, m, packed).map_err(wrap)?;
        let y = ternary_matmul_quantized(&qa, packed).map_err(wrap)?;
        Ok((CpuStorage::F32(y), Shape::from((m, self.w.n))))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;

        use crate::gpu::ternary_matmul::{ternary_matmul_gpu, DeviceTernary};
        use crate::op::cuda::{view, with_aux};
        let dev = s.device().clone();
        let stream = dev.cuda_stream();
        let x = view::<f32>(s, l, KERNEL, "x")?;
        let m = x.len() / self.w.k;
        let Placement::Device(bytes) = &self.w.place else {
            return Err(wrap(crate::KernelError::Device {
                kernel: KERNEL,
                arg: "weights",
                expected: "cuda (where x is)".into(),
                found: "cpu".into(),
            }));
        };
        let y = with_aux::<u8, _>(bytes, KERNEL, "weights", |b| {
            let w = DeviceTernary {
                bytes: b,
                n: self.w.n,
                k: self.w.k,
                k_padded: self.w.k_padded,
                scale: self.w.scale,
            };
            ternary_matmul_gpu(&stream, &x, m, &w).map_err(wrap)
        })?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((m, self.w.n)),
        ))
    }
}
