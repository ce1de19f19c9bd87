//! What every KV cache of fixed capacity shares: the bookkeeping of how many positions it holds
//! ([`Positions`]: a request past the capacity is an error before any layer runs), and a
//! key/value buffer pair `[batch, capacity, row]` of f32 written by position range
//! ([`KvBuffer`]), sized with checked arithmetic and held against the machine's memory.
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
}

/// Keys and values `[batch, capacity, row]` (f32) for one layer, or for YOCO's one shared set.
#[derive(Debug, Clone)]
pub struct KvBuffer {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    batch: usize,
    capacity: usize,
    row: usize,
}

impl KvBuffer {
    /// Zeroed buffers, which the OS backs lazily: capacity not yet written costs no memory.
    /// `what` names the cache in a size error.
    pub fn new(what: &str, batch: usize, capacity: usize, row: usize) -> Result<Self> {
        let n = crate::alloc::elements(what, &[batch, capacity, row])?;
        crate::alloc::check_bytes(what, n, 2 * std::mem::size_of::<f32>())?;
        Ok(KvBuffer {
            k: vec![0.0; n],
            v: vec![0.0; n],
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

    /// Floats per position (`kv_heads · head_dim`).
    pub fn row(&self) -> usize {
        self.row
    }

    /// Bytes of both buffers at full capacity.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * std::mem::size_of::<f32>()
    }

    /// Writes `[batch, len, row]` keys and values at positions `start..start + len`.
    pub fn write(&mut self, start: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (batch, row) = (self.batch, self.row);
        let len = k.len() / (batch * row).max(1);
        if k.len() != batch * len * row || v.len() != k.len() || start + len > self.capacity {
            return Err(Error::Cache(format!(
                "writing {} keys and {} values at position {start} into a cache of batch {batch}, \
                 capacity {}, row {row}",
                k.len(),
                v.len(),
                self.capacity
            )));
        }
        for s in 0..batch {
            let dst = (s * self.capacity + start) * row;
            let src = s * len * row..(s + 1) * len * row;
            self.k[dst..dst + len * row].copy_from_slice(&k[src.clone()]);
            self.v[dst..dst + len * row].copy_from_slice(&v[src]);
        }
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
        let mut kv = KvBuffer::new("test", 2, 4, 3).unwrap();
        let k: Vec<f32> = (0..12).map(|i| i as f32).collect(); // [2, 2, 3]
        let v: Vec<f32> = k.iter().map(|x| -x).collect();
        kv.write(1, &k, &v).unwrap();
        assert_eq!(&kv.k[3..9], &k[0..6]);
        assert_eq!(&kv.k[12 + 3..12 + 9], &k[6..12]);
        assert_eq!(&kv.v[12 + 3..12 + 9], &v[6..12]);
        assert!(kv.write(3, &k, &v).is_err(), "past the capacity");
        assert!(kv.write(0, &k[..5], &v[..5]).is_err(), "ragged");
        assert_eq!(kv.bytes(), 2 * 2 * 4 * 3 * 4);
        assert!(KvBuffer::new("huge", usize::MAX, 2, 1).is_err());
    }
}
