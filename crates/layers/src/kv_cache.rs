//! What every KV cache of fixed capacity shares: the bookkeeping of how many positions it holds
//! ([`Positions`]: a request past the capacity is an error before any layer runs), and a
//! key/value buffer pair `[batch, capacity, row]` written by position range ([`KvBuffer`]): f32,
//! or f16 / bf16 on request (half the bytes; the attention kernels widen them as they read),
//! sized with checked arithmetic and held against the machine's memory.
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Positions held by a cache of `capacity` for `batch` sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    batch: usize,
    capacity: usize,
    len: usize,
}

impl Positions {
    pub fn new(batch: usize, capacity: usize) -> Self {
        Positions {
            batch,
            capacity,
            len: 0,
        }
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An error unless `tokens` more positions fit; checked before any layer runs, so a refused
    /// request leaves the cache as it was.
    pub fn reserve(&self, tokens: usize) -> Result<()> {
        if tokens > self.capacity - self.len {
            return Err(Error::Cache(format!(
                "{} cached + {tokens} new positions exceed the cache's capacity of {}",
                self.len, self.capacity
            )));
        }
        Ok(())
    }

    /// Records `tokens` more positions (after [`Positions::reserve`]).
    pub fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// Forgets the positions from `len` on (none if it already holds no more): a pass that
    /// failed part-way gives back the positions its earlier parts recorded.
    pub fn rewind(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// The dtypes a KV cache can be kept in: f32 (exact), or f16 / bf16 (half the memory and the
/// bytes a decoded token reads; each key and value rounded once when it is written).
pub const KV_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::BF16];

/// An error unless `dtype` is one of [`KV_DTYPES`].
pub fn check_kv_dtype(dtype: DType) -> Result<()> {
    if KV_DTYPES.contains(&dtype) {
        return Ok(());
    }
    Err(Error::Cache(format!(
        "a KV cache in {} is not supported: choose f32, f16 or bf16",
        dtype.as_str()
    )))
}

/// Keys and values `[batch, capacity, row]` for one layer, or for YOCO's one shared set.
#[derive(Debug)]
pub struct KvBuffer {
    /// `[batch, capacity, row]` in [`KvBuffer::dtype`] on the model's device.
    pub k: Tensor,
    pub v: Tensor,
    batch: usize,
    capacity: usize,
    row: usize,
}

/// A deep copy: the buffers are written in place, so clones must not share them.
impl Clone for KvBuffer {
    fn clone(&self) -> Self {
        let copy = |t: &Tensor| t.copy().unwrap_or_else(|_| t.clone());
        KvBuffer {
            k: copy(&self.k),
            v: copy(&self.v),
            batch: self.batch,
            capacity: self.capacity,
            row: self.row,
        }
    }
}

impl KvBuffer {
    /// Zeroed buffers for `batch` sequences of up to `capacity` positions of `row` values each,
    /// on `device`; sized with checked arithmetic first (`what` names them in errors).
    pub fn new(
        what: &str,
        batch: usize,
        capacity: usize,
        row: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::with_dtype(what, batch, capacity, row, DType::F32, device)
    }

    /// As [`KvBuffer::new`], kept in `dtype` (one of [`KV_DTYPES`]; another is an error).
    pub fn with_dtype(
        what: &str,
        batch: usize,
        capacity: usize,
        row: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        check_kv_dtype(dtype)?;
        let dims = [batch, capacity, row];
        let n = crate::alloc::elements(what, &dims)?;
        crate::alloc::check_bytes(what, n, 2 * dtype.size_in_bytes())?;
        Ok(KvBuffer {
            k: crate::alloc::zeros(what, &dims, dtype, device)?,
            v: crate::alloc::zeros(what, &dims, dtype, device)?,
            batch,
            capacity,
            row,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn row(&self) -> usize {
        self.row
    }

    /// The dtype the keys and values are kept in.
    pub fn dtype(&self) -> DType {
        self.k.dtype()
    }

    pub fn bytes(&self) -> usize {
        2 * self.batch * self.capacity * self.row * self.dtype().size_in_bytes()
    }

    /// Writes `k`, `v` `[batch, len, row]` (any float dtype, stored in the buffers' dtype) at
    /// positions `start..start + len`, in place on the buffers' device.
    pub fn write(&mut self, start: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (batch, row) = (self.batch, self.row);
        let len = k.dims().get(1).copied().unwrap_or(0);
        if k.dims() != [batch, len, row] || v.dims() != k.dims() || start + len > self.capacity {
            return Err(Error::Cache(format!(
                "writing keys {:?} and values {:?} at position {start} into a cache of batch \
                 {batch}, capacity {}, row {row}",
                k.dims(),
                v.dims(),
                self.capacity
            )));
        }
        let dtype = self.dtype();
        let stored = |t: &Tensor| t.to_dtype(dtype)?.contiguous();
        self.k.slice_set(&stored(k)?, 1, start)?;
        self.v.slice_set(&stored(v)?, 1, start)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{KvBuffer, Positions};

    #[test]
    fn positions_refuse_what_does_not_fit() {
        let mut p = Positions::new(2, 8);
        p.reserve(8).unwrap();
        p.advance(5);
        let e = p.reserve(4).unwrap_err().to_string();
        assert!(
            e.contains("5 cached + 4 new positions") && e.contains("capacity of 8"),
            "{e}"
        );
        assert!(p.reserve(usize::MAX).is_err());
        assert_eq!((p.len(), p.batch(), p.capacity()), (5, 2, 8));
    }

    #[test]
    fn writes_land_at_their_positions_per_sequence() {
        let dev = candle_core::Device::Cpu;
        let mut kv = KvBuffer::new("test", 2, 4, 3, &dev).unwrap();
        let k = candle_core::Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((2, 2, 3))
            .unwrap();
        let v = k.neg().unwrap();
        kv.write(1, &k, &v).unwrap();
        let kb: Vec<f32> = kv.k.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = kv.v.flatten_all().unwrap().to_vec1().unwrap();
        let kh: Vec<f32> = k.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(&kb[3..9], &kh[0..6]);
        assert_eq!(&kb[12 + 3..12 + 9], &kh[6..12]);
        assert_eq!(vb[12 + 3], -kh[6]);
        assert_eq!(&kb[..3], &[0.0; 3], "position 0 untouched");
        let copy = kv.clone();
        kv.write(0, &k, &v).unwrap();
        let cb: Vec<f32> = copy.k.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(&cb[..3], &[0.0; 3], "a clone does not share the buffers");
        assert!(kv.write(3, &k, &v).is_err(), "past the capacity");
        assert!(
            kv.write(0, &k.narrow(2, 0, 2).unwrap(), &v).is_err(),
            "wrong row"
        );
        assert_eq!(kv.bytes(), 2 * 2 * 4 * 3 * 4);
        assert!(KvBuffer::new("huge", usize::MAX, 2, 1, &dev).is_err());
    }

    #[test]
    fn a_half_precision_buffer_rounds_once_and_takes_half_the_bytes() {
        use candle_core::{DType, Tensor};
        let dev = candle_core::Device::Cpu;
        let k = Tensor::new(&[[[1.0f32 / 3.0, -2.5, 65504.0]]], &dev).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            let mut kv = KvBuffer::with_dtype("test", 1, 2, 3, dtype, &dev).unwrap();
            assert_eq!(kv.dtype(), dtype);
            assert_eq!(kv.bytes(), 2 * 2 * 3 * 2);
            kv.write(1, &k, &k.neg().unwrap()).unwrap();
            let got: Vec<f32> =
                kv.k.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
            let want: Vec<f32> = k
                .to_dtype(dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(&got[3..], &want[..], "{dtype:?}");
            assert_ne!(got[3], 1.0 / 3.0, "{dtype:?}: rounded");
        }
        for dtype in [DType::U8, DType::I64, DType::F64] {
            let e = KvBuffer::with_dtype("test", 1, 2, 3, dtype, &dev)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(dtype.as_str()) && e.contains("f32, f16 or bf16"),
                "{e}"
            );
        }
    }
}
