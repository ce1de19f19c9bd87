//! The RG-LRU as one op on tensors. In f32 it is one fused pass: `cpu_fwd` is [`rg_lru_cpu`],
//! `cuda_fwd` (feature `candle-cuda`) the scan kernel with the RG-LRU's loads and stores. In bf16
//! (and on devices without a `*_fwd`) it runs as tensor ops around the [`crate::linear_scan`] op,
//! the form HF computes, in the model's dtype.
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, D};

use super::{rg_lru_cpu, RgLruInput};
use crate::op::{checked, cpu_f32, with_cpu_aux, wrap, SideOutput};

const KERNEL: &str = "rg_lru";
const FLOATS: &[DType] = &[DType::F32, DType::BF16, DType::F16];

/// The layer's parameters, `[width]` f32 each.
#[derive(Debug, Clone, Copy)]
pub struct RgLruParams<'a> {
    pub gate_x_bias: &'a Tensor,
    pub gate_a_bias: &'a Tensor,
    /// softplus(Λ).
    pub softplus_a: &'a Tensor,
}

/// Where each sequence starts and which steps are tokens.
#[derive(Debug, Clone, Copy)]
pub struct RgLruSteps<'a> {
    /// `[batch, seq_len]` u8: 1 where a sequence starts (the state resets).
    pub reset: &'a Tensor,
    /// `[batch, seq_len]` u8: 0 at padding (the state passes through); all tokens when `None`.
    pub real: Option<&'a Tensor>,
}

/// `y = h ⊙ gelu_tanh(branch)` `[batch, seq_len, width]` (dtype of `x`; `y = h` without a branch)
/// and the last state `[batch, width]` (f32), from the recurrence's input `x`, the gates'
/// pre-activations without their biases `gate_x`, `gate_a` (all `[batch, seq_len, width]`) and the
/// state before the chunk `h0` `[batch, width]` (f32).
pub fn rg_lru(
    x: &Tensor,
    gate_x: &Tensor,
    gate_a: &Tensor,
    branch: Option<&Tensor>,
    params: &RgLruParams<'_>,
    h0: &Tensor,
    steps: &RgLruSteps<'_>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = x.device();
    let x = checked(KERNEL, "x", x, None, FLOATS, dev)?;
    let (b, t, w) = x.dims3()?;
    let dims = [b, t, w];
    let dtype = x.dtype();
    let gate_x = checked(KERNEL, "gate_x", gate_x, Some(&dims), &[dtype], dev)?;
    let gate_a = checked(KERNEL, "gate_a", gate_a, Some(&dims), &[dtype], dev)?;
    let branch = branch
        .map(|br| checked(KERNEL, "branch", br, Some(&dims), &[dtype], dev))
        .transpose()?;
    let param = |arg, p: &Tensor| checked(KERNEL, arg, p, Some(&[w]), &[DType::F32], dev);
    let gate_x_bias = param("gate_x_bias", params.gate_x_bias)?;
    let gate_a_bias = param("gate_a_bias", params.gate_a_bias)?;
    let softplus_a = param("softplus_a", params.softplus_a)?;
    let h0 = checked(KERNEL, "h0", h0, Some(&[b, w]), &[DType::F32], dev)?;
    let reset = checked(
        KERNEL,
        "reset",
        steps.reset,
        Some(&[b, t]),
        &[DType::U8],
        dev,
    )?;
    let real = steps
        .real
        .map(|r| checked(KERNEL, "real", r, Some(&[b, t]), &[DType::U8], dev))
        .transpose()?;
    if (dev.is_cpu() || dev.is_cuda()) && dtype == DType::F32 {
        let op = FusedRgLru {
            dims,
            branch,
            gate_x_bias,
            gate_a_bias,
            softplus_a,
            h0,
            reset,
            real,
            h_last: SideOutput::default(),
        };
        let y = x.apply_op3_no_bwd(&gate_x, &gate_a, &op)?;
        return Ok((y, op.h_last.take(KERNEL)?));
    }
    rg_lru_tensors(
        &x,
        &gate_x,
        &gate_a,
        branch.as_ref(),
        &RgLruParams {
            gate_x_bias: &gate_x_bias,
            gate_a_bias: &gate_a_bias,
            softplus_a: &softplus_a,
        },
        &h0,
        &RgLruSteps {
            reset: &reset,
            real: real.as_ref(),
        },
    )
}

/// [`rg_lru`] as tensor ops around the [`crate::linear_scan`] op (HF `RecurrentGemmaRglru`): the
/// path on GPUs and in bf16, on any device. Inputs as [`rg_lru`]'s, unchecked.
pub fn rg_lru_tensors(
    x: &Tensor,
    gate_x: &Tensor,
    gate_a: &Tensor,
    branch: Option<&Tensor>,
    params: &RgLruParams<'_>,
    h0: &Tensor,
    steps: &RgLruSteps<'_>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dtype = x.dtype();
    let (gate_x_bias, gate_a_bias, softplus_a) =
        (params.gate_x_bias, params.gate_a_bias, params.softplus_a);
    // Padding is the identity even where a sequence would start (as the fused pass): no reset
    // there.
    let reset = match steps.real {
        Some(real) => &steps.reset.mul(real)?,
        None => steps.reset,
    };
    let real = steps.real;
    let input_gate =
        candle_nn::ops::sigmoid(&gate_x.broadcast_add(&gate_x_bias.to_dtype(dtype)?)?)?;
    let rec_gate = candle_nn::ops::sigmoid(&gate_a.broadcast_add(&gate_a_bias.to_dtype(dtype)?)?)?;
    let log_a = (rec_gate.to_dtype(DType::F32)?.broadcast_mul(softplus_a)? * -8.0)?;
    let a = log_a.exp()?;
    let a_sq = (log_a * 2.0)?.exp()?;
    // sqrt(1 − a²), except 1 at a sequence start, where the state resets (the scan's reset).
    let multiplier = (a_sq.neg()? + 1.0)?.sqrt()?;
    let reset_b = reset
        .unsqueeze(D::Minus1)?
        .broadcast_as(multiplier.shape())?;
    let multiplier = reset_b.where_cond(&multiplier.ones_like()?, &multiplier)?;
    let mut xn = (x * input_gate)?.mul(&multiplier.to_dtype(dtype)?)?;
    let mut a = a.to_dtype(dtype)?;
    if let Some(real) = real {
        // Padding is the identity map: the state passes through it unchanged.
        let real = real.to_dtype(dtype)?.unsqueeze(D::Minus1)?;
        xn = xn.broadcast_mul(&real)?;
        a = (a.broadcast_mul(&real)? + real.neg()?.affine(1.0, 1.0)?.broadcast_as(a.shape())?)?;
    }
    let (h, h_last) = crate::linear_scan::linear_scan(&a, &xn, Some(h0), Some(reset))?;
    let y = match branch {
        // candle's `gelu` is the tanh approximation (`gelu_pytorch_tanh`).
        Some(br) => (h * br.gelu()?)?,
        None => h,
    };
    Ok((y, h_last))
}

struct FusedRgLru {
    dims: [usize; 3],
    branch: Option<Tensor>,
    gate_x_bias: Tensor,
    gate_a_bias: Tensor,
    softplus_a: Tensor,
    h0: Tensor,
    reset: Tensor,
    real: Option<Tensor>,
    h_last: SideOutput,
}

impl CustomOp3 for FusedRgLru {
    fn name(&self) -> &'static str {
        "rg-lru"
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
        let [batch, seq_len, width] = self.dims;
        let flags = |t: &Tensor, arg| {
            with_cpu_aux::<u8, _>(t, KERNEL, arg, |s| Ok(s.iter().map(|&v| v != 0).collect()))
        };
        let reset: Vec<bool> = flags(&self.reset, "reset")?;
        let real: Option<Vec<bool>> = self.real.as_ref().map(|r| flags(r, "real")).transpose()?;
        let aux = |t: &Tensor, arg| with_cpu_aux::<f32, _>(t, KERNEL, arg, |s| Ok(s.to_vec()));
        let (bx, ba, sp, h0) = (
            aux(&self.gate_x_bias, "gate_x_bias")?,
            aux(&self.gate_a_bias, "gate_a_bias")?,
            aux(&self.softplus_a, "softplus_a")?,
            aux(&self.h0, "h0")?,
        );
        let run = |branch: Option<&[f32]>| {
            rg_lru_cpu(&RgLruInput {
                batch,
                seq_len,
                width,
                x: cpu_f32(s1, l1, KERNEL, "x")?,
                gate_x: cpu_f32(s2, l2, KERNEL, "gate_x")?,
                gate_a: cpu_f32(s3, l3, KERNEL, "gate_a")?,
                gate_x_bias: &bx,
                gate_a_bias: &ba,
                softplus_a: &sp,
                h0: Some(&h0),
                reset: &reset,
                real: real.as_deref(),
                branch,
            })
            .map_err(wrap)
        };
        let out = match &self.branch {
            Some(br) => with_cpu_aux::<f32, _>(br, KERNEL, "branch", |s| run(Some(s)))?,
            None => run(None)?,
        };
        self.h_last.set(
            KERNEL,
            Tensor::from_vec(out.h_last, (batch, width), &candle_core::Device::Cpu)?,
        )?;
        Ok((CpuStorage::F32(out.y), Shape::from((batch, seq_len, width))))
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
        use cudarc::driver::DevicePtr;

        use crate::op::cuda::{aux_view, view};
        let [batch, seq_len, width] = self.dims;
        let shape = crate::linear_scan::ScanShape::new(batch, seq_len, width).map_err(wrap)?;
        let dev = s1.device().clone();
        let stream = dev.cuda_stream();
        let (x, gx, ga) = (
            view::<f32>(s1, l1, KERNEL, "x")?,
            view::<f32>(s2, l2, KERNEL, "gate_x")?,
            view::<f32>(s3, l3, KERNEL, "gate_a")?,
        );
        let alloc = |n: usize| {
            stream
                .alloc_zeros::<f32>(n)
                .map_err(candle_core::Error::wrap)
        };
        let (y, h_last) = (alloc(batch * seq_len * width)?, alloc(batch * width)?);
        // The auxiliary tensors' storages, held for the launch.
        let (bx, ba, sp, h0, reset) = (
            self.gate_x_bias.storage_and_layout(),
            self.gate_a_bias.storage_and_layout(),
            self.softplus_a.storage_and_layout(),
            self.h0.storage_and_layout(),
            self.reset.storage_and_layout(),
        );
        let branch = self.branch.as_ref().map(|t| t.storage_and_layout());
        let real = self.real.as_ref().map(|t| t.storage_and_layout());
        let f32s = [
            aux_view::<f32>(&bx.0, bx.1, KERNEL, "gate_x_bias")?,
            aux_view::<f32>(&ba.0, ba.1, KERNEL, "gate_a_bias")?,
            aux_view::<f32>(&sp.0, sp.1, KERNEL, "softplus_a")?,
            aux_view::<f32>(&h0.0, h0.1, KERNEL, "h0")?,
        ];
        let branch = branch
            .as_ref()
            .map(|g| aux_view::<f32>(&g.0, g.1, KERNEL, "branch"))
            .transpose()?;
        let reset = aux_view::<u8>(&reset.0, reset.1, KERNEL, "reset")?;
        let real = real
            .as_ref()
            .map(|g| aux_view::<u8>(&g.0, g.1, KERNEL, "real"))
            .transpose()?;
        {
            let [bx, ba, sp, h0] = [
                f32s[0].device_ptr(&stream),
                f32s[1].device_ptr(&stream),
                f32s[2].device_ptr(&stream),
                f32s[3].device_ptr(&stream),
            ];
            let branch = branch.as_ref().map(|v| v.device_ptr(&stream));
            let reset = reset.device_ptr(&stream);
            let real = real.as_ref().map(|v| v.device_ptr(&stream));
            let (xp, _gx0) = x.device_ptr(&stream);
            let (gxp, _gx1) = gx.device_ptr(&stream);
            let (gap, _gx2) = ga.device_ptr(&stream);
            let (yp, _gy) = y.device_ptr(&stream);
            let (hp, _gh) = h_last.device_ptr(&stream);
            let params = crate::params::FrugalRgLruParams {
                scan: crate::params::FrugalLinearScanParams {
                    a: std::ptr::null(),
                    x: xp as *const std::ffi::c_void,
                    h0: h0.0 as *const f32,
                    reset: reset.0 as *const u8,
                    h: yp as *mut std::ffi::c_void,
                    h_last: hp as *mut f32,
                    chunk_a: std::ptr::null_mut(),
                    chunk_h: std::ptr::null_mut(),
                    batch: 0,
                    seq_len: 0,
                    channels: 0,
                    num_chunks: 0,
                },
                gate_x: gxp as *const f32,
                gate_a: gap as *const f32,
                branch: branch
                    .as_ref()
                    .map_or(std::ptr::null(), |(b, _)| *b as *const f32),
                gate_x_bias: bx.0 as *const f32,
                gate_a_bias: ba.0 as *const f32,
                softplus_a: sp.0 as *const f32,
                real: real
                    .as_ref()
                    .map_or(std::ptr::null(), |(r, _)| *r as *const u8),
            };
            // SAFETY: every pointer is a live buffer on this stream's device, of the sizes `shape`
            // implies (checked when the op was built), held by the guards of this block.
            unsafe { crate::gpu::rg_lru::launch_rg_lru(&stream, shape, params) }.map_err(wrap)?;
        }
        self.h_last.set(
            KERNEL,
            crate::op::cuda::tensor(h_last, &dev, (batch, width)),
        )?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((batch, seq_len, width)),
        ))
    }
}
