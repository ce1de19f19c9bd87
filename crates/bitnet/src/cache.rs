//! The KV cache of a sequence batch: per layer, keys and values of every past position (after
//! RoPE), in buffers sized once for a fixed capacity. Appending past it is an error.
use candle_core::Tensor;
use candle_nn::kv_cache::KvCache;

use layers::kv_cache::Positions;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) layers: Vec<KvCache>,
    positions: Positions,
}

impl Cache {
    pub(crate) fn new(layers: usize, batch: usize, capacity: usize) -> Self {
        Cache {
            // [batch, positions, kv_heads, head_dim]: positions on dim 1, so one sequence's cached
            // keys are one contiguous run (what the attention kernel reads, without a copy).
            layers: (0..layers).map(|_| KvCache::new(1, capacity)).collect(),
            positions: Positions::new(batch, capacity),
        }
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.positions.batch()
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.positions.capacity()
    }

    /// Checks that `tokens` more positions fit, before any layer runs.
    pub(crate) fn reserve(&self, tokens: usize) -> Result<()> {
        self.positions.reserve(tokens)
    }

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.positions.advance(tokens);
    }

    /// Bytes the cached keys and values take now.
    pub fn bytes(&self) -> Result<usize> {
        let mut total = 0;
        for l in &self.layers {
            for t in [l.k()?, l.v()?].into_iter().flatten() {
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
        }
        Ok(total)
    }

    /// Keys and values of layer `i` after appending `k`, `v` (`[batch, len, kv_heads, head_dim]`);
    /// contiguous (a view of the buffer for one sequence, a copy for a batch).
    pub(crate) fn append(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.layers[i].append(&k.contiguous()?, &v.contiguous()?)?;
        Ok((k.contiguous()?, v.contiguous()?))
    }
}
