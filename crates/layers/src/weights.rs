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
use half::vec::HalfBitsVecExt;

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

/// The name under which [`CheckedSafetensors`] hands out several tensors stacked along their
/// first dimension as one (see [`crate::Linear::load_stacked`]): `prefix[a.weight:rows|b.weight:rows]`
/// stands for `prefix` + `a.weight` (`rows` rows), then `prefix` + `b.weight`, and so on. Their
/// values are converted straight into one buffer, so stacking costs no copy at load.
pub fn stacked_name<'a>(parts: impl IntoIterator<Item = (&'a str, usize)>) -> String {
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(name, rows)| format!("{name}:{rows}"))
        .collect();
    format!("[{}]", parts.join("|"))
}

/// What [`as_shipped_name`] appends.
const AS_SHIPPED: &str = "@as-shipped";

/// The name under which [`CheckedSafetensors`] hands out `name` (plain or [`stacked_name`]) in
/// bf16 when it is stored in bf16 and f32 is asked for: the values an f32 load would narrow back
/// to bf16 anyway (`crate::linear::as_shipped`), without the f32 copy. Other stored dtypes load
/// as asked. Other backends do not know the name (`contains_tensor` is false): callers fall back
/// to the plain name ([`crate::linear::get_as_shipped`]).
pub fn as_shipped_name(name: &str) -> String {
    format!("{name}{AS_SHIPPED}")
}

/// `(prefix, [(name, rows)])` of a [`stacked_name`] under a prefix; `None` for a plain name.
fn parse_stacked(path: &str) -> Option<(&str, Vec<(&str, usize)>)> {
    let inner = path.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let parts = inner[open + 1..]
        .split('|')
        .map(|part| {
            let (name, rows) = part.rsplit_once(':')?;
            Some((name, rows.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((&inner[..open], parts))
}

impl CheckedSafetensors {
    /// The stored view of `name` and its dtype, after checking its shape and its dtype against
    /// the requested `dtype` (finiteness is checked where the values are read: [`Self::load`]).
    fn checked_view(
        &self,
        name: &str,
        shape: Option<&[usize]>,
        dtype: DType,
    ) -> candle_core::Result<(safetensors::tensor::TensorView<'_>, DType)> {
        let view = self.files.get(name)?;
        let stored = DType::try_from(view.dtype()).map_err(|_| {
            tensor_error(
                name,
                format!("stored as {:?}, which is not supported", view.dtype()),
            )
        })?;
        if let Some(s) = shape {
            if view.shape() != s {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("shape mismatch for {name}"),
                    expected: s.into(),
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
        Ok((view, stored))
    }

    /// The stored dtype of a plain or stacked name (`None`: missing, mixed or not a candle dtype).
    fn stored(&self, name: &str) -> Option<DType> {
        let dtype = |n: &str| {
            self.files
                .get(n)
                .ok()
                .and_then(|v| DType::try_from(v.dtype()).ok())
        };
        match parse_stacked(name) {
            Some((prefix, parts)) => {
                let mut dtypes = parts.iter().map(|(p, _)| dtype(&format!("{prefix}{p}")));
                let first = dtypes.next()??;
                dtypes.all(|d| d == Some(first)).then_some(first)
            }
            None => dtype(name),
        }
    }

    fn checked(
        &self,
        name: &str,
        shape: Option<&Shape>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(plain) = name.strip_suffix(AS_SHIPPED) {
            let dtype = if dtype == DType::F32 && self.stored(plain) == Some(DType::BF16) {
                DType::BF16
            } else {
                dtype
            };
            return self.checked(plain, shape, dtype, dev);
        }
        if let Some((prefix, parts)) = parse_stacked(name) {
            let Some(shape) = shape else {
                candle_core::bail!("a stacked tensor ({name}) is loaded with its shape");
            };
            return self.stacked(prefix, &parts, shape, dtype, dev);
        }
        let (view, stored) = self.checked_view(name, shape.map(|s| s.dims()), dtype)?;
        let shape = Shape::from(view.shape());
        load(&[(name, &view)], stored, &shape, dtype, dev)
    }

    /// The tensors `prefix + name` of `parts` (each `rows` rows, the rest of `shape` after
    /// that), checked one by one (errors name the stored tensor) and stacked along dim 0.
    fn stacked(
        &self,
        prefix: &str,
        parts: &[(&str, usize)],
        shape: &Shape,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let (&total, rest) = shape.dims().split_first().ok_or_else(|| {
            candle_core::Error::Msg(format!("a stacked tensor ({prefix}{parts:?}) has rank 0"))
        })?;
        if parts.iter().map(|p| p.1).sum::<usize>() != total {
            candle_core::bail!("the parts of {prefix}{parts:?} do not add up to {total} rows");
        }
        let mut views = Vec::with_capacity(parts.len());
        for &(name, rows) in parts {
            let name = format!("{prefix}{name}");
            let want: Vec<usize> = std::iter::once(rows).chain(rest.iter().copied()).collect();
            let (view, stored) = self.checked_view(&name, Some(&want), dtype)?;
            views.push((name, view, stored));
        }
        let stored = views.first().map(|v| v.2);
        match stored.filter(|&s| views.iter().all(|v| v.2 == s)) {
            Some(stored) => {
                let parts: Vec<_> = views.iter().map(|(n, v, _)| (n.as_str(), v)).collect();
                load(&parts, stored, shape, dtype, dev)
            }
            // Mixed stored dtypes: each part on its own, then one copy.
            None => {
                let tensors = views
                    .iter()
                    .map(|(name, view, stored)| {
                        let shape = Shape::from(view.shape());
                        load(&[(name, view)], *stored, &shape, dtype, dev)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&tensors, 0)
            }
        }
    }
}

/// `parts` (named views, all `stored`, concatenated in order) as one tensor of `shape` in
/// `dtype` on `dev`, every value checked finite. On the CPU the values are converted straight
/// from the mapped file into the final buffer in one threaded pass that also checks them;
/// elsewhere they are checked, then go through candle.
fn load(
    parts: &[(&str, &safetensors::tensor::TensorView<'_>)],
    stored: DType,
    shape: &Shape,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let non_finite = |name: &str, bytes: &[u8]| match first_non_finite(bytes, stored) {
        Some((index, value)) => Err(tensor_error(
            name,
            format!("holds a non-finite value ({value}) at flat index {index}"),
        )),
        None => Ok(()),
    };
    if let Some(mut buffer) = Buffer::new(dev, stored, dtype, shape.elem_count()) {
        let mut offset = 0;
        for (name, view) in parts {
            let bytes = view.data();
            match buffer.fill(offset, bytes) {
                Some((written, true)) => offset += written,
                // Found while converting: locate the value for the message.
                Some((_, false)) => {
                    non_finite(name, bytes)?;
                    candle_core::bail!("{name}: a non-finite value the locating pass missed");
                }
                None => candle_core::bail!("{name}: larger than its shape ({shape:?})"),
            }
        }
        return buffer.into_tensor(shape, dev);
    }
    let mut tensors = Vec::with_capacity(parts.len());
    for (name, view) in parts {
        non_finite(name, view.data())?;
        tensors.push(view.load(dev)?.to_dtype(dtype)?);
    }
    match tensors.as_slice() {
        [one] => Ok(one.clone()),
        _ => Tensor::cat(&tensors, 0),
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

    /// For a [`stacked_name`]: whether every part is there.
    fn contains_tensor(&self, name: &str) -> bool {
        let name = name.strip_suffix(AS_SHIPPED).unwrap_or(name);
        match parse_stacked(name) {
            Some((prefix, parts)) => parts
                .iter()
                .all(|(part, _)| self.files.get(&format!("{prefix}{part}")).is_ok()),
            None => self.files.get(name).is_ok(),
        }
    }
}

/// A CPU buffer that stored values are written into in their final dtype: f32 from bf16, f16 or
/// f32; bf16 and f16 kept as stored (as their bits: a zeroed `Vec<u16>` is fresh pages from the
/// allocator, faulted in by the threads that fill it, where `vec![bf16::ZERO; n]` would be
/// written once more by one thread).
enum Buffer {
    F32(DType, Vec<f32>),
    BF16(Vec<u16>),
    F16(Vec<u16>),
}

impl Buffer {
    /// `None` where candle's own path is used instead (other devices and conversions).
    fn new(dev: &Device, stored: DType, dtype: DType, len: usize) -> Option<Buffer> {
        if !dev.is_cpu() {
            return None;
        }
        let buffer = match (stored, dtype) {
            (DType::BF16 | DType::F16 | DType::F32, DType::F32) => {
                Buffer::F32(stored, kernels::cpu::huge_pages(vec![0f32; len]))
            }
            (DType::BF16, DType::BF16) => Buffer::BF16(kernels::cpu::huge_pages(vec![0; len])),
            (DType::F16, DType::F16) => Buffer::F16(kernels::cpu::huge_pages(vec![0; len])),
            _ => return None,
        };
        Some(buffer)
    }

    /// Writes the stored `bytes` from element `offset` on, in one threaded pass that also checks
    /// them: `(elements written, all finite)`, or `None` when they do not fit.
    fn fill(&mut self, offset: usize, bytes: &[u8]) -> Option<(usize, bool)> {
        match self {
            Buffer::F32(stored, out) => {
                let n = bytes.len() / stored.size_in_bytes();
                let dst = out.get_mut(offset..offset + n)?;
                Some((n, to_f32_into(bytes, *stored, dst)))
            }
            Buffer::BF16(out) => {
                let dst = out.get_mut(offset..offset + bytes.len() / 2)?;
                Some((dst.len(), copy_halves(bytes, dst, BF16_INF)))
            }
            Buffer::F16(out) => {
                let dst = out.get_mut(offset..offset + bytes.len() / 2)?;
                Some((dst.len(), copy_halves(bytes, dst, F16_INF)))
            }
        }
    }

    fn into_tensor(self, shape: &Shape, dev: &Device) -> candle_core::Result<Tensor> {
        match self {
            Buffer::F32(_, v) => Tensor::from_vec(v, shape, dev),
            Buffer::BF16(v) => Tensor::from_vec::<_, half::bf16>(v.reinterpret_into(), shape, dev),
            Buffer::F16(v) => Tensor::from_vec::<_, half::f16>(v.reinterpret_into(), shape, dev),
        }
    }
}

/// Elements per task of the threaded conversion.
const CONVERT_CHUNK: usize = 1 << 16;

/// A float is finite iff its magnitude bits (sign masked off) are below its infinity's.
const BF16_INF: i16 = 0x7f80;
const F16_INF: i16 = 0x7c00;
const F32_INF: i32 = 0x7f80_0000;

/// Little-endian 16-bit floats copied into `dst` in parallel chunks; whether every magnitude is
/// below `infinity` (the bits of the format's infinity). The magnitude is masked to 15 bits, so
/// its maximum is a signed 16-bit one, which SSE2 vectorises.
fn copy_halves(bytes: &[u8], dst: &mut [u16], infinity: i16) -> bool {
    use rayon::prelude::*;
    dst.par_chunks_mut(CONVERT_CHUNK)
        .zip(bytes.par_chunks(CONVERT_CHUNK * 2))
        .all(|(dst, src)| {
            let mut largest = 0i16;
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                let w = u16::from_le_bytes([s[0], s[1]]);
                *d = w;
                largest = largest.max((w & 0x7fff) as i16);
            }
            largest < infinity
        })
}

/// The f32 values of a little-endian buffer of `stored` floats, converted in one threaded pass
/// straight from the mapped file into the final buffer (candle's path copies the stored bytes
/// first and converts on one thread). `None` for dtypes it does not handle.
pub fn to_f32(bytes: &[u8], stored: DType) -> Option<Vec<f32>> {
    if !matches!(stored, DType::BF16 | DType::F16 | DType::F32) {
        return None;
    }
    let mut out = vec![0f32; bytes.len() / stored.size_in_bytes()];
    to_f32_into(bytes, stored, &mut out);
    Some(out)
}

/// [`to_f32`] into `dst` (as many values as it holds), checking the values as it goes: whether
/// all are finite. Other stored dtypes leave `dst` untouched.
fn to_f32_into(bytes: &[u8], stored: DType, dst: &mut [f32]) -> bool {
    use rayon::prelude::*;
    let width = stored.size_in_bytes();
    let convert: fn(&[u8], &mut [f32]) -> bool = match stored {
        // bf16 is the top half of an f32: exact.
        DType::BF16 => |src, dst| {
            let mut largest = 0i16;
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                let w = u16::from_le_bytes([s[0], s[1]]);
                *d = f32::from_bits(u32::from(w) << 16);
                largest = largest.max((w & 0x7fff) as i16);
            }
            largest < BF16_INF
        },
        DType::F16 => |src, dst| {
            let mut largest = 0i16;
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                let w = u16::from_le_bytes([s[0], s[1]]);
                *d = half::f16::from_bits(w).to_f32();
                largest = largest.max((w & 0x7fff) as i16);
            }
            largest < F16_INF
        },
        DType::F32 => |src, dst| {
            let mut largest = 0i32;
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                let w = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                *d = f32::from_bits(w);
                largest = largest.max((w & 0x7fff_ffff) as i32);
            }
            largest < F32_INF
        },
        _ => return true,
    };
    dst.par_chunks_mut(CONVERT_CHUNK)
        .zip(bytes.par_chunks(CONVERT_CHUNK * width))
        .all(|(dst, src)| convert(src, dst))
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

    /// Every load path (converted to f32, kept as stored, and candle's for other conversions;
    /// plain and stacked) refuses a non-finite value anywhere, naming the tensor and the index,
    /// and accepts the largest finite values.
    #[test]
    fn every_load_path_checks_finiteness() {
        use candle_nn::VarBuilder;
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("layers-finite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = (1 << 16) * 2 + 5;
        for stored in [DType::F32, DType::BF16, DType::F16] {
            let largest = match stored {
                DType::F32 => f32::MAX,
                DType::BF16 => half::bf16::MAX.to_f32(),
                _ => half::f16::MAX.to_f32(),
            };
            for (bad, at) in [
                (f32::NAN, n - 1),
                (f32::INFINITY, 70_000),
                (f32::NEG_INFINITY, 0),
            ] {
                let mut values = vec![0.5f32; n];
                values[1] = largest;
                values[2] = -largest;
                let good = Tensor::from_vec(values.clone(), n, &dev).unwrap();
                values[at] = bad;
                let bad_t = Tensor::from_vec(values, n, &dev).unwrap();
                let tensors: HashMap<String, Tensor> =
                    [("good.weight", &good), ("bad.weight", &bad_t)]
                        .into_iter()
                        .map(|(k, t)| (k.to_string(), t.to_dtype(stored).unwrap()))
                        .collect();
                let file = dir.join(format!("{stored:?}.safetensors"));
                candle_core::safetensors::save(&tensors, &file).unwrap();
                for dtype in [DType::F32, DType::BF16, DType::F16] {
                    let vb: VarBuilder =
                        super::var_builder(std::slice::from_ref(&file), dtype, &dev).unwrap();
                    let loaded = vb.get(n, "good.weight").unwrap();
                    assert_eq!(loaded.dtype(), dtype);
                    if dtype == stored || dtype == DType::F32 {
                        let back = loaded
                            .to_dtype(DType::F32)
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap();
                        assert_eq!(back[1], largest, "{stored:?} -> {dtype:?}");
                    }
                    let stacked = super::stacked_name([("good.weight", n), ("bad.weight", n)]);
                    for name in ["bad.weight".to_string(), stacked] {
                        let rows = if name.starts_with('[') { 2 * n } else { n };
                        let err = vb.get(rows, &name).unwrap_err().to_string();
                        assert!(
                            err.contains("bad.weight") && err.contains(&format!("index {at}")),
                            "{stored:?} -> {dtype:?}, {name}: {err}"
                        );
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
