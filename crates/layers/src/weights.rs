//! Loading a checkpoint's tensors with what they hold checked before anything is converted:
//! the stored dtype must be of the kind the model asks for (floats for float weights, the exact
//! integer type for packed ones: an integer tensor is never silently read as floats), the shape
//! must match (checked before the bytes are read), and every stored float must be finite (one
//! vectorised pass over the mapped bytes, reporting the first bad value's index).
use std::path::PathBuf;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::{Error, Result};

/// A [`SimpleBackend`] over memory-mapped safetensors files that checks each tensor it hands
/// out (see the module documentation).
pub struct CheckedSafetensors {
    files: MmapedSafetensors,
}

impl std::fmt::Debug for CheckedSafetensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedSafetensors").finish_non_exhaustive()
    }
}

/// Maps `files` (already checked by [`crate::files::safetensors_files`]) for reading.
pub fn open(files: &[PathBuf]) -> Result<CheckedSafetensors> {
    for f in files {
        crate::files::regular_file(f)?;
    }
    // SAFETY: the files are mapped read-only and are regular files; as with every mmap-based
    // loader, another process truncating or rewriting them while the model is loaded is outside
    // what this process can guard against.
    let files = unsafe { MmapedSafetensors::multi(files) }?;
    Ok(CheckedSafetensors { files })
}

/// A [`VarBuilder`] over checked, memory-mapped `files`, producing tensors in `dtype` on `device`.
pub fn var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let backend: Box<dyn SimpleBackend> = Box::new(open(files)?);
    Ok(VarBuilder::from_backend(backend, dtype, device.clone()))
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

/// Wrapped for candle's `SimpleBackend`, without the backtrace `Error::wrap` would capture under
/// `RUST_BACKTRACE` (the message names the tensor: a trace adds nothing for the user).
fn tensor_error(name: &str, message: String) -> candle_core::Error {
    candle_core::Error::Wrapped(Box::new(Error::Tensor {
        name: name.to_string(),
        message,
    }))
}

impl CheckedSafetensors {
    fn checked(
        &self,
        name: &str,
        shape: Option<&Shape>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let view = self.files.get(name)?;
        let stored = DType::try_from(view.dtype()).map_err(|_| {
            tensor_error(
                name,
                format!("stored as {:?}, which is not supported", view.dtype()),
            )
        })?;
        if let Some(s) = shape {
            if view.shape() != s.dims() {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("shape mismatch for {name}"),
                    expected: s.clone(),
                    got: view.shape().into(),
                });
            }
        }
        let compatible = if is_float(dtype) {
            is_float(stored)
        } else {
            stored == dtype
        };
        if !compatible {
            let want = if is_float(dtype) {
                "a float type (f32, bf16, f16 or f64)".to_string()
            } else {
                format!("{dtype:?}")
            };
            return Err(tensor_error(
                name,
                format!("stored as {stored:?}, expected {want}: it is not converted"),
            ));
        }
        if let Some((index, value)) = first_non_finite(view.data(), stored) {
            return Err(tensor_error(
                name,
                format!("holds a non-finite value ({value}) at flat index {index}"),
            ));
        }
        if dev.is_cpu() && dtype == DType::F32 {
            if let Some(values) = to_f32(view.data(), stored) {
                return Tensor::from_vec(values, view.shape(), dev);
            }
        }
        view.load(dev)?.to_dtype(dtype)
    }
}

impl SimpleBackend for CheckedSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.checked(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.checked(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.files.get(name).is_ok()
    }
}

/// Elements per task of the threaded conversion.
const CONVERT_CHUNK: usize = 1 << 16;

/// The f32 values of a little-endian buffer of `stored` floats, converted in one threaded pass
/// straight from the mapped file into the final buffer (candle's path copies the stored bytes
/// first and converts on one thread). `None` for dtypes it does not handle.
pub fn to_f32(bytes: &[u8], stored: DType) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    let width = stored.size_in_bytes();
    let convert: fn(&[u8], &mut [f32]) = match stored {
        // bf16 is the top half of an f32: exact.
        DType::BF16 => |src, dst| {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
            }
        },
        DType::F16 => |src, dst| {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = half::f16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
            }
        },
        DType::F32 => |src, dst| {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        },
        _ => return None,
    };
    let n = bytes.len() / width;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CONVERT_CHUNK)
        .zip(bytes.par_chunks(CONVERT_CHUNK * width))
        .for_each(|(dst, src)| convert(src, dst));
    Some(out)
}

/// The largest of `words` masked to their magnitude bits: a branch-free reduction the compiler
/// vectorises. A float is non-finite iff its magnitude bits are at least the exponent mask.
macro_rules! max_magnitude {
    ($bytes:expr, $t:ty, $n:literal, $mask:expr) => {
        $bytes
            .chunks_exact($n)
            .map(|c| {
                let mut w = [0u8; $n];
                w.copy_from_slice(c);
                <$t>::from_le_bytes(w) & $mask
            })
            .fold(0, <$t>::max)
    };
}

/// The first non-finite value of a little-endian float buffer of `dtype`, with its index; `None`
/// when all are finite or the dtype is not a float. The common all-finite case costs one read of
/// the bytes; only a failure rescans to locate the value.
pub fn first_non_finite(bytes: &[u8], dtype: DType) -> Option<(usize, String)> {
    // Checked in blocks so a bad value early in a large tensor is found without reading it all.
    const BLOCK: usize = 1 << 16;
    let (width, bad): (usize, fn(&[u8]) -> bool) = match dtype {
        DType::F32 => (4, |b| max_magnitude!(b, u32, 4, 0x7fff_ffff) >= 0x7f80_0000),
        DType::BF16 => (2, |b| max_magnitude!(b, u16, 2, 0x7fff) >= 0x7f80),
        DType::F16 => (2, |b| max_magnitude!(b, u16, 2, 0x7fff) >= 0x7c00),
        DType::F64 => (8, |b| {
            max_magnitude!(b, u64, 8, 0x7fff_ffff_ffff_ffff) >= 0x7ff0_0000_0000_0000
        }),
        _ => return None,
    };
    for (block, chunk) in bytes.chunks(BLOCK * width).enumerate() {
        if !bad(chunk) {
            continue;
        }
        for (i, v) in chunk.chunks_exact(width).enumerate() {
            if bad(v) {
                let value = match dtype {
                    DType::F32 => f32::from_le_bytes([v[0], v[1], v[2], v[3]]).to_string(),
                    DType::F64 => {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(v);
                        f64::from_le_bytes(w).to_string()
                    }
                    // bf16 and f16 share their non-finite encodings' meaning: the sign and
                    // whether the mantissa is zero (infinity) or not (NaN).
                    _ => {
                        let w = u16::from_le_bytes([v[0], v[1]]);
                        let mantissa = if dtype == DType::BF16 {
                            w & 0x7f
                        } else {
                            w & 0x3ff
                        };
                        match (mantissa, w >> 15) {
                            (0, 0) => "inf".to_string(),
                            (0, _) => "-inf".to_string(),
                            _ => "NaN".to_string(),
                        }
                    }
                };
                return Some((block * BLOCK + i, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::to_f32;
    use candle_core::{DType, Device, Tensor};

    /// The threaded conversion gives exactly candle's values, on sizes around its chunking.
    #[test]
    fn conversion_to_f32_is_candles_bit_for_bit() {
        for n in [0usize, 1, 7, (1 << 16) - 1, (1 << 16) + 3, 3 << 16] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 20011) as f32 - 10005.0) * 0.37e-3)
                .collect();
            let t = Tensor::from_vec(x, n, &Device::Cpu).unwrap();
            for dtype in [DType::BF16, DType::F16, DType::F32] {
                let stored = t.to_dtype(dtype).unwrap();
                let bytes: Vec<u8> = match dtype {
                    DType::BF16 => stored
                        .to_vec1::<half::bf16>()
                        .unwrap()
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                    DType::F16 => stored
                        .to_vec1::<half::f16>()
                        .unwrap()
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                    _ => stored
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                };
                let want: Vec<u32> = stored
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let got: Vec<u32> = to_f32(&bytes, dtype)
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, want, "{dtype:?}, n = {n}");
            }
        }
        assert!(to_f32(&[0u8; 8], DType::U8).is_none());
    }
}
