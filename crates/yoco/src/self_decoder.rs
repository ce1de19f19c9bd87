//! The self-decoder: `n_layers / 2` layers of gated retention or sliding-window attention, each
//! with a constant-size cache.
use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::cache::SelfState;
use crate::config::{Config, SelfDecoderKind};
use crate::decoder_layer::Sublayers;
use crate::error::Result;
use crate::gated_retention::GatedRetention;
use crate::sliding_window::{SlidingWindowAttention, WindowCache};

#[derive(Debug, Clone)]
pub enum Mixer {
    GatedRetention(GatedRetention),
    SlidingWindow(SlidingWindowAttention),
}

#[derive(Debug, Clone)]
pub struct SelfDecoder {
    layers: Vec<(Mixer, Sublayers)>,
}

impl SelfDecoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.half_layers())
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                let mixer = match cfg.self_decoder() {
                    SelfDecoderKind::GatedRetention => {
                        Mixer::GatedRetention(GatedRetention::new(cfg, vb.pp("mixer"))?)
                    }
                    SelfDecoderKind::SlidingWindow { window } => Mixer::SlidingWindow(
                        SlidingWindowAttention::new(cfg, window, vb.pp("mixer"))?,
                    ),
                };
                Ok((mixer, Sublayers::new(cfg, &vb)?))
            })
            .collect::<Result<_>>()?;
        Ok(SelfDecoder { layers })
    }

    /// Fresh per-layer states for `batch` sequences.
    pub fn new_states(&self, batch: usize, device: &candle_core::Device) -> Result<Vec<SelfState>> {
        self.layers
            .iter()
            .map(|(m, _)| match m {
                Mixer::GatedRetention(g) => Ok(SelfState::Retention(
                    crate::cache::retention_state(batch, g.heads(), g.head_dim(), device)?,
                )),
                Mixer::SlidingWindow(_) => Ok(SelfState::Window(WindowCache::default())),
            })
            .collect()
    }

    /// Bytes of one layer's full window ring for `batch` sequences (0 for gated retention).
    pub fn window_ring_bytes(&self, batch: usize) -> usize {
        match self.layers.first() {
            Some((Mixer::SlidingWindow(w), _)) => batch * w.cache_len() * 4,
            _ => 0,
        }
    }

    pub fn forward(&self, x: &Tensor, start: usize, states: &mut [SelfState]) -> Result<Tensor> {
        let mut x = x.clone();
        let n = self.layers.len();
        for (i, ((mixer, sub), state)) in self.layers.iter().zip(states.iter_mut()).enumerate() {
            x = sub.forward(&x, |h| match (mixer, state) {
                (Mixer::GatedRetention(g), SelfState::Retention(s)) => g.forward(h, start, s),
                (Mixer::SlidingWindow(w), SelfState::Window(c)) => w.forward(h, start, c),
                _ => Err(crate::error::YocoError::Cache(
                    "the cache was made for the other self-decoder kind".into(),
                )),
            })?;
            // Overflow is reported where it first happens.
            layers::finite::ensure_finite(&x, || {
                format!("in the output of self-decoder layer {i} of {n}")
            })?;
        }
        Ok(x)
    }
}
