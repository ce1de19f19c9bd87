//! BitLinear (docs/bitnet.md §1): a linear layer whose weights are ternary `{−1, 0, +1}` times a
//! per-tensor scale `β` (BitNet b1.58), or binary `±1` (the original BitNet), kept packed at 2 bits
//! per weight ([`PackedTernary`]) from load to matmul; the input is quantised per token to int8 by
//! absmax inside the kernel. `y = (x_q · W_tᵀ) / s_x · β`, no bias (2B4T has none).
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use kernels::ternary_matmul::{ternary_matmul_shared, PackedTernary, TernaryWeights};

use crate::config::{ScaleConvention, WeightFormat};
use crate::error::{BitNetError, Result};

#[derive(Debug, Clone)]
pub struct BitLinear {
    /// Packed on the model's device (see `kernels::ternary_matmul::TernaryWeights`).
    weights: TernaryWeights,
}

impl BitLinear {
    /// Loads `<prefix>.weight` (and `<prefix>.weight_scale`) of an `[out, in]` layer in the
    /// checkpoint's format. Master weights are ternarised here, once.
    pub fn load(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        format: WeightFormat,
    ) -> Result<Self> {
        let key = |name: &str| format!("{}.{name}", vb.prefix());
        let weights_err = |e: candle_core::Error| BitNetError::Weights(e.to_string());
        let weights = match format {
            WeightFormat::Master => {
                let w = vb
                    .get_with_hints_dtype((out_dim, in_dim), "weight", Init::Const(0.0), DType::F32)
                    .map_err(weights_err)?;
                let w: Vec<f32> = w.flatten_all()?.to_vec1()?;
                PackedTernary::ternarize_absmean(&w, out_dim, in_dim)?
            }
            WeightFormat::Packed { scale } => {
                if !out_dim.is_multiple_of(4) {
                    return Err(BitNetError::Weights(format!(
                        "{}: {out_dim} output features cannot be packed four rows to a byte",
                        key("weight")
                    )));
                }
                let packed = vb
                    .get_with_hints_dtype(
                        (out_dim / 4, in_dim),
                        "weight",
                        Init::Const(0.0),
                        DType::U8,
                    )
                    .map_err(weights_err)?;
                let stored = vb
                    .get_with_hints_dtype(1, "weight_scale", Init::Const(0.0), DType::F32)
                    .map_err(weights_err)?
                    .to_vec1::<f32>()?[0];
                let beta = scale_from_checkpoint(stored, scale, &key("weight_scale"))?;
                let packed: Vec<u8> = packed.flatten_all()?.to_vec1()?;
                PackedTernary::from_hf_packed(&packed, out_dim, in_dim, beta)
                    .map_err(|e| BitNetError::Weights(format!("{}: {e}", key("weight"))))?
            }
        };
        Ok(BitLinear {
            weights: TernaryWeights::new(weights, vb.device())?,
        })
    }

    /// From weights already packed, on the CPU.
    pub fn from_packed(weights: PackedTernary) -> Result<Self> {
        Ok(BitLinear {
            weights: TernaryWeights::new(weights, &candle_core::Device::Cpu)?,
        })
    }

    /// The original BitNet's BitLinear (Wang et al. 2023): float weights `[out, in]` binarised as
    /// `sign(W − mean W)` with `β = mean|W|`, run on the same kernel.
    pub fn binarized(w: &Tensor) -> Result<Self> {
        let (out_dim, in_dim) = w.dims2()?;
        let data: Vec<f32> = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(BitLinear {
            weights: TernaryWeights::new(
                PackedTernary::binarize(&data, out_dim, in_dim)?,
                w.device(),
            )?,
        })
    }

    pub fn weights(&self) -> &TernaryWeights {
        &self.weights
    }

    pub fn in_dim(&self) -> usize {
        self.weights.k()
    }

    pub fn out_dim(&self) -> usize {
        self.weights.n()
    }

    /// `[..., in] -> [..., out]`, in the input's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = forward_shared(x, &[self])?;
        out.pop()
            .ok_or_else(|| BitNetError::Input("no output".into()))
    }
}

/// docs/bitnet.md §3: `autobitlinear` stores `β = mean|W|` (multiply), the legacy `bitlinear` class
/// its inverse (divide). Trained BitNet weights have `mean|W|` well below 1, so a scale on the
/// wrong side of 1 means the file and its config disagree: an error, not garbage output.
fn scale_from_checkpoint(stored: f32, convention: ScaleConvention, key: &str) -> Result<f32> {
    if !(stored.is_finite() && stored > 0.0) {
        return Err(BitNetError::Weights(format!(
            "{key} is {stored}, not a positive scale"
        )));
    }
    match convention {
        ScaleConvention::Multiply if stored > 1.0 => Err(BitNetError::Weights(format!(
            "{key} is {stored}: linear_class autobitlinear stores mean|W| (< 1), this looks like \
             its inverse (the legacy `bitlinear` class); fix quantization_config.linear_class"
        ))),
        ScaleConvention::Divide if stored < 1.0 => Err(BitNetError::Weights(format!(
            "{key} is {stored}: linear_class bitlinear stores 1/mean|W| (> 1), this looks like \
             mean|W| itself (`autobitlinear`); fix quantization_config.linear_class"
        ))),
        ScaleConvention::Multiply => Ok(stored),
        ScaleConvention::Divide => Ok(1.0 / stored),
    }
}

/// Runs several layers reading the same input (q/k/v, gate/up), quantising it once on the CPU.
pub fn forward_shared(x: &Tensor, layers: &[&BitLinear]) -> Result<Vec<Tensor>> {
    let Some(first) = layers.first() else {
        return Ok(vec![]);
    };
    let dims = x.dims().to_vec();
    let in_dim = first.in_dim();
    if dims.last() != Some(&in_dim) || layers.iter().any(|l| l.in_dim() != in_dim) {
        return Err(BitNetError::Input(format!(
            "BitLinear input has shape {dims:?}, expected [..., {in_dim}]"
        )));
    }
    let weights: Vec<&TernaryWeights> = layers.iter().map(|l| &l.weights).collect();
    Ok(ternary_matmul_shared(x, &weights)?)
}
