//! The YOCO language model (`yoco.py` `YOCO`): `x = sqrt(dim) · embed(tokens)`, the self-decoder,
//! the cross-decoder on its output with the one shared KV, the final RMSNorm and the untied output
//! projection. Prefill can exit early: the prompt's positions need only the self-decoder and the
//! K/V projection, not the cross-decoder (docs/yoco.md §4).
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};
use layers::Linear;

use crate::cache::{shared_kv, Cache, CacheBytes};
use crate::config::Config;
use crate::cross_decoder::CrossDecoder;
use crate::error::{Result, YocoError};
use crate::ffn::linear;
use crate::norm;
use crate::self_decoder::SelfDecoder;

#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed_tokens: Embedding,
    self_decoder: SelfDecoder,
    cross_decoder: CrossDecoder,
    layer_norm: RmsNorm,
    output_projection: Linear,
    device: Device,
}

impl Model {
    /// Builds the model from a `VarBuilder` over the reference's state_dict names.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        if vb.dtype() != DType::F32 {
            return Err(YocoError::Input(format!(
                "run dtype {:?} is not supported: YOCO runs in f32",
                vb.dtype()
            )));
        }
        // Kept as shipped (bf16 values stay bf16), widened after the lookup.
        let embed =
            layers::linear::get_as_shipped(&vb, (cfg.vocab_size, cfg.dim), "embed_tokens.weight")
                .map_err(|e| YocoError::Weights(e.to_string()))?;
        Ok(Model {
            cfg: cfg.clone(),
            embed_tokens: Embedding::new(embed, cfg.dim),
            self_decoder: SelfDecoder::new(cfg, vb.pp("self_decoder"))?,
            cross_decoder: CrossDecoder::new(cfg, vb.pp("cross_decoder"))?,
            layer_norm: norm::rms_norm(cfg.dim, cfg.norm_eps, vb.pp("layer_norm"))?,
            output_projection: linear(cfg.dim, cfg.vocab_size, vb.pp("output_projection"))?,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A cache for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<Cache> {
        if batch == 0 || capacity == 0 {
            return Err(YocoError::Input(format!(
                "a cache needs a batch and a capacity of at least 1 (got {batch}, {capacity})"
            )));
        }
        // The reference sizes its caches from `max_batch_size` and `max_seq_len` (positive when
        // set): a request past either is refused as the reference would fail it.
        let max_batch = self.cfg.max_batch_size;
        if max_batch > 0 && batch > max_batch {
            return Err(YocoError::Input(format!(
                "a batch of {batch} sequences is larger than the config's max_batch_size {max_batch}"
            )));
        }
        if self.cfg.max_seq_len > 0 && capacity as u64 > self.cfg.max_seq_len as u64 {
            return Err(YocoError::Cache(format!(
                "a capacity of {capacity} positions is larger than the config's max_seq_len {}",
                self.cfg.max_seq_len
            )));
        }
        Ok(Cache::new(
            self.self_decoder.new_states(batch, &self.device)?,
            shared_kv(batch, capacity, self.cross_decoder.kv_row(), &self.device)?,
        ))
    }

    /// The cache's bytes at its capacity (shared KV plus self-decoder states).
    pub fn cache_bytes(&self, cache: &Cache) -> CacheBytes {
        cache.bytes(self.self_decoder.window_ring_bytes(cache.batch()))
    }

    /// Logits `[batch, len, vocab]` of every position of `tokens` (equal-length sequences), after
    /// the positions already in `cache`, which this extends.
    pub fn forward<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &mut Cache) -> Result<Tensor> {
        let x = self.embed(tokens, cache)?;
        // One entry into the thread pool for the whole pass (layers::pool).
        let h = layers::pool::on_pool(|| self.run(&x, cache, true))?;
        self.logits(&h)
    }

    /// The logits of the last position only, `[batch, vocab]`.
    pub fn forward_last<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &mut Cache) -> Result<Tensor> {
        let x = self.embed(tokens, cache)?;
        let t = x.dim(1)?;
        let h = layers::pool::on_pool(|| self.run(&x, cache, true))?;
        Ok(self.logits(&h.narrow(1, t - 1, 1)?)?.squeeze(1)?)
    }

    /// Prefill with early exit: every position but the last runs only the self-decoder and the
    /// K/V projection, `chunk` tokens at a time; the last runs every layer. Returns the last
    /// position's logits `[batch, vocab]`, equal to [`Self::forward_last`]'s.
    pub fn prefill<S: AsRef<[u32]>>(
        &self,
        tokens: &[S],
        cache: &mut Cache,
        chunk: usize,
    ) -> Result<Tensor> {
        let t = self.check(tokens, cache)?.1;
        let chunk = chunk.max(1);
        let mut start = 0;
        while start + 1 < t {
            let end = (start + chunk).min(t - 1);
            let part: Vec<&[u32]> = tokens.iter().map(|s| &s.as_ref()[start..end]).collect();
            let x = self.embed(&part, cache)?;
            layers::pool::on_pool(|| self.run(&x, cache, false))?;
            start = end;
        }
        let last: Vec<&[u32]> = tokens.iter().map(|s| &s.as_ref()[t - 1..]).collect();
        self.forward_last(&last, cache)
    }

    fn embed<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &Cache) -> Result<Tensor> {
        let (b, t) = self.check(tokens, cache)?;
        let ids: Vec<u32> = tokens
            .iter()
            .flat_map(|s| s.as_ref().iter().copied())
            .collect();
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let x = self.embed_tokens.forward(&ids)?.to_dtype(DType::F32)?;
        Ok((x * (self.cfg.dim as f64).sqrt())?)
    }

    /// Self-decoder, shared K/V, and (unless exiting early) the cross-decoder; advances the cache.
    fn run(&self, x: &Tensor, cache: &mut Cache, cross: bool) -> Result<Tensor> {
        let (start, t) = (cache.len(), x.dim(1)?);
        let h = self.self_decoder.forward(x, start, &mut cache.layers)?;
        self.cross_decoder.write_kv(&h, start, &mut cache.shared)?;
        let out = if cross {
            self.cross_decoder.forward(&h, start, &cache.shared)?
        } else {
            h
        };
        cache.advance(t);
        Ok(out)
    }

    fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self
            .output_projection
            .forward(&norm::apply(&self.layer_norm, h)?)?)
    }

    fn check<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &Cache) -> Result<(usize, usize)> {
        let b = tokens.len();
        if b != cache.batch() {
            return Err(YocoError::Input(format!(
                "{b} sequences for a cache of batch {}",
                cache.batch()
            )));
        }
        let (_, t) = layers::tokens::check_batch(tokens, self.cfg.vocab_size, None)?;
        cache.reserve(t)?;
        Ok((b, t))
    }
}
