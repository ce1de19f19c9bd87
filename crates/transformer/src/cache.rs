//! The KV cache: every layer keeps the keys and values of every position it has seen, so its size
//! grows as `layers · positions · 2 · kv_heads · head_dim` (the cost YOCO, Griffin and Hawk cut).
use crate::config::Config;

use layers::kv_cache::{KvBuffer, Positions};

/// Every layer's keys and values, `[batch, capacity, kv_heads · head_dim]` each (f32 unless made
/// with [`KvCache::new_in`]; on the model's device).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<KvBuffer>,
    positions: Positions,
}

impl KvCache {
    /// A cache for `cfg` holding up to `capacity` positions of `batch` sequences. Sized with
    /// checked arithmetic and held against the machine's memory first, so a huge capacity is an
    /// error, not an aborted process. The buffers are zeroed allocations, which the OS backs
    /// lazily: unwritten capacity costs no memory.
    pub fn new(
        cfg: &Config,
        batch: usize,
        capacity: usize,
        device: &candle_core::Device,
    ) -> crate::Result<Self> {
        Self::new_in(cfg, batch, capacity, candle_core::DType::F32, device)
    }

    /// As [`KvCache::new`], kept in `dtype` (f32, f16 or bf16; another is an error).
    pub fn new_in(
        cfg: &Config,
        batch: usize,
        capacity: usize,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> crate::Result<Self> {
        layers::kv_cache::check_kv_dtype(dtype)?;
        let row = cfg.kv_row();
        let what = format!("the KV cache for batch {batch} × capacity {capacity}");
        let n = layers::alloc::elements(&what, &[batch, capacity, row])?;
        let all = layers::alloc::elements(&what, &[n, 2 * cfg.num_hidden_layers])?;
        layers::alloc::check_bytes(&what, all, dtype.size_in_bytes())?;
        Ok(KvCache {
            layers: (0..cfg.num_hidden_layers)
                .map(|_| KvBuffer::with_dtype(&what, batch, capacity, row, dtype, device))
                .collect::<layers::Result<_>>()?,
            positions: Positions::new(batch, capacity),
        })
    }

    pub fn batch(&self) -> usize {
        self.positions.batch()
    }

    /// The dtype the keys and values are kept in.
    pub fn dtype(&self) -> candle_core::DType {
        self.layers
            .first()
            .map_or(candle_core::DType::F32, KvBuffer::dtype)
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.positions.capacity()
    }

    /// Bytes of the buffers at full capacity.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(KvBuffer::bytes).sum()
    }

    /// Bytes the cached positions occupy (what a cache that grows as it goes would hold).
    pub fn used_bytes(&self) -> usize {
        self.bytes() / self.capacity().max(1) * self.len()
    }

    pub(crate) fn reserve(&self, t: usize) -> crate::Result<()> {
        self.positions.reserve(t)
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.positions.advance(t);
    }

    pub(crate) fn rewind(&mut self, len: usize) {
        self.positions.rewind(len);
    }
}
