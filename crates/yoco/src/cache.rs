//! YOCO's caches (docs/yoco.md §5): per self-decoder layer a constant-size state (gated retention's
//! `d × d` per head, or a `window`-slot ring of keys and values), plus ONE key/value cache for the
//! whole cross-decoder, its capacity fixed at creation. Going past it is an error.
use candle_core::{Device, Tensor};
use layers::kv_cache::{KvBuffer, Positions};

use crate::error::Result;
use crate::sliding_window::WindowCache;

/// One self-decoder layer's state.
#[derive(Debug, Clone)]
pub enum SelfState {
    /// `[batch, heads, d, d]` f32, on the model's device.
    Retention(Tensor),
    Window(WindowCache),
}

/// The cross-decoder's keys and values, `[batch, capacity, kv_heads · head_dim]` each.
pub type SharedKv = KvBuffer;

/// The shared KV buffers, sized checked (see [`KvBuffer::new`]).
pub(crate) fn shared_kv(
    batch: usize,
    capacity: usize,
    row: usize,
    device: &Device,
) -> Result<SharedKv> {
    KvBuffer::new(
        &format!("the shared KV cache for batch {batch} × capacity {capacity}"),
        batch,
        capacity,
        row,
        device,
    )
}

/// A zero gated-retention state `[batch, heads, d, d]` (f32), sized checked.
pub(crate) fn retention_state(
    batch: usize,
    heads: usize,
    d: usize,
    device: &Device,
) -> Result<Tensor> {
    let what = format!("the gated-retention state for batch {batch}");
    layers::alloc::zeros(
        &what,
        &[batch, heads, d, d],
        candle_core::DType::F32,
        device,
    )
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub(crate) layers: Vec<SelfState>,
    pub(crate) shared: SharedKv,
    positions: Positions,
}

impl Cache {
    /// A cache for `cfg` without a model (its sizes only depend on the config).
    pub fn for_config(
        cfg: &crate::Config,
        batch: usize,
        capacity: usize,
        device: &Device,
    ) -> Result<Self> {
        let d = cfg.self_head_dim();
        let layers = (0..cfg.half_layers())
            .map(|_| match cfg.self_decoder() {
                crate::SelfDecoderKind::GatedRetention => Ok(SelfState::Retention(
                    retention_state(batch, cfg.n_self_heads, d, device)?,
                )),
                crate::SelfDecoderKind::SlidingWindow { .. } => {
                    Ok(SelfState::Window(WindowCache::default()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let row = cfg.n_attn_kv_heads * cfg.attn_head_dim();
        Ok(Cache::new(layers, shared_kv(batch, capacity, row, device)?))
    }

    /// Bytes of a full window ring of one layer for `cfg` (0 for gated retention).
    pub fn window_ring_bytes(cfg: &crate::Config, batch: usize) -> usize {
        match cfg.self_decoder() {
            crate::SelfDecoderKind::SlidingWindow { window } => batch * 2 * window * cfg.dim * 4,
            crate::SelfDecoderKind::GatedRetention => 0,
        }
    }

    pub(crate) fn new(layers: Vec<SelfState>, shared: SharedKv) -> Self {
        Cache {
            layers,
            positions: Positions::new(shared.batch(), shared.capacity()),
            shared,
        }
    }

    pub fn batch(&self) -> usize {
        self.positions.batch()
    }

    /// Positions seen.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Positions the shared KV cache holds.
    pub fn capacity(&self) -> usize {
        self.positions.capacity()
    }

    pub(crate) fn reserve(&self, tokens: usize) -> Result<()> {
        self.positions.reserve(tokens)
    }

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.positions.advance(tokens);
    }

    /// Bytes of the cache at its capacity: the shared KV buffers plus every self-decoder layer's
    /// state (a window ring counted full).
    pub fn bytes(&self, window_ring_bytes: usize) -> CacheBytes {
        let shared = self.shared.bytes();
        let self_decoder = self
            .layers
            .iter()
            .map(|l| match l {
                SelfState::Retention(s) => s.elem_count() * 4,
                SelfState::Window(_) => window_ring_bytes,
            })
            .sum();
        CacheBytes {
            shared_kv: shared,
            self_decoder,
        }
    }
}

/// What [`Cache::bytes`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBytes {
    pub shared_kv: usize,
    pub self_decoder: usize,
}

impl CacheBytes {
    pub fn total(&self) -> usize {
        self.shared_kv + self.self_decoder
    }
}
