//! The KV cache: every layer keeps the keys and values of every position it has seen, so its size
//! grows as `layers · positions · 2 · kv_heads · head_dim` (the cost YOCO, Griffin and Hawk cut).
use crate::config::Config;

/// One layer's keys and values, `[batch, capacity, kv_heads · head_dim]` each (f32).
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    batch: usize,
    capacity: usize,
    row: usize,
    len: usize,
}

impl KvCache {
    /// A cache for `cfg` holding up to `capacity` positions of `batch` sequences. Sized with
    /// checked arithmetic and held against the machine's memory first, so a huge capacity is an
    /// error, not an aborted process. The buffers are zeroed allocations, which the OS backs
    /// lazily: unwritten capacity costs no memory.
    pub fn new(cfg: &Config, batch: usize, capacity: usize) -> crate::Result<Self> {
        let row = cfg.kv_row();
        let what = format!("the KV cache for batch {batch} × capacity {capacity}");
        let n = layers::alloc::elements(&what, &[batch, capacity, row])?;
        let all = layers::alloc::elements(&what, &[n, 2 * cfg.num_hidden_layers])?;
        layers::alloc::check_bytes(&what, all, std::mem::size_of::<f32>())?;
        let layer = || LayerKv {
            k: vec![0.0; n],
            v: vec![0.0; n],
        };
        Ok(KvCache {
            layers: (0..cfg.num_hidden_layers).map(|_| layer()).collect(),
            batch,
            capacity,
            row,
            len: 0,
        })
    }

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

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the buffers at full capacity.
    pub fn bytes(&self) -> usize {
        self.layers.len() * 2 * self.batch * self.capacity * self.row * 4
    }

    /// Bytes the cached positions occupy (what a cache that grows as it goes would hold).
    pub fn used_bytes(&self) -> usize {
        self.layers.len() * 2 * self.batch * self.len * self.row * 4
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

impl LayerKv {
    /// Writes `[batch, len, row]` keys and values at positions `start..start + len`.
    pub(crate) fn write(
        &mut self,
        cache: (usize, usize, usize),
        start: usize,
        k: &[f32],
        v: &[f32],
    ) {
        let (batch, capacity, row) = cache;
        let len = k.len() / (batch * row);
        for s in 0..batch {
            let dst = (s * capacity + start) * row;
            let src = s * len * row..(s + 1) * len * row;
            self.k[dst..dst + len * row].copy_from_slice(&k[src.clone()]);
            self.v[dst..dst + len * row].copy_from_slice(&v[src]);
        }
    }
}
