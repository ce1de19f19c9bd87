//! The RG-LRU as one op on tensors. On the CPU in f32 its `cpu_fwd` is the fused pass
//! ([`rg_lru_cpu`]); on other devices and dtypes it runs as tensor ops around the
//! [`crate::linear_scan`] op (whose `cuda_fwd` is the scan kernel), the form HF computes.
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, D};

use super::{rg_lru_cpu, RgLruInput};
use crate::op::{checked, cpu_f32, with_cpu_aux, wrap};

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
    if dev.is_cpu() && dtype == DType::F32 {
        let op = FusedRgLru {
            dims,
            branch,
            gate_x_bias,
            gate_a_bias,
            softplus_a,
            h0,
            reset,
            real,
            h_last: std::sync::Mutex::new(None),
        };
        let y = x.apply_op3_no_bwd(&gate_x, &gate_a, &op)?;
        let h_last = op
            .h_last
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{KERNEL}: poisoned state")))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{KERNEL}: no final state")))?;
        return Ok((y, h_last));
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
    h_last: std::sync::Mutex<Option<Tensor>>,
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
        *self
            .h_last
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{KERNEL}: poisoned state")))? = Some(
            Tensor::from_vec(out.h_last, (batch, width), &candle_core::Device::Cpu)?,
        );
        Ok((CpuStorage::F32(out.y), Shape::from((batch, seq_len, width))))
    }
}
