//! Noticing NaN or infinity in activations where they first appear (a layer's output, the
//! logits), so a run that overflowed (bf16, f16, extreme inputs) is an error naming the place
//! instead of `null` logits and arbitrary tokens.
use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::error::{Error, Result};

/// Whether every value of `t` is finite. On the CPU one pass over the values; elsewhere one
/// reduction (`sum(0 · t)` is NaN iff some value is not finite), which also works on a GPU.
pub fn all_finite(t: &Tensor) -> Result<bool> {
    if !t.dtype().is_float() {
        return Ok(true);
    }
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            // The magnitude bits' maximum: branch-free, vectorised.
            let max = v[start..end]
                .iter()
                .fold(0u32, |m, x| m.max(x.to_bits() & 0x7fff_ffff));
            return Ok(max < 0x7f80_0000);
        }
    }
    let s = (t * 0.0)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(s.is_finite())
}

/// An error naming `place()` when `t` holds a non-finite value.
pub fn ensure_finite(t: &Tensor, place: impl FnOnce() -> String) -> Result<()> {
    if all_finite(t)? {
        Ok(())
    } else {
        Err(Error::NonFinite { place: place() })
    }
}
