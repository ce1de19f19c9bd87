//! The model: token embedding, `num_hidden_layers` pre-norm blocks (attention, SwiGLU), final
//! RMSNorm, output projection (tied to the embedding when the config says so).
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};
use layers::Linear;

use crate::attention::{linear, rope_tables, Attention};
use crate::cache::KvCache;
use crate::config::Config;
use crate::error::{Result, TransformerError};
use crate::mlp::Mlp;

/// Positions a prompt runs through the layers at once unless [`Transformer::with_prefill_chunk`]
/// says otherwise. llama.cpp's default micro-batch too; with one sequence a chunk's products stay
/// under `kernels::cpu_gemm::MAX_ROWS` rows, where frugal's own product (the SwiGLU and the
/// residual additions inside it) takes them.
pub const PREFILL_CHUNK: usize = 512;

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct Transformer {
    cfg: Config,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    /// Positions a prompt runs through the layers at once ([`PREFILL_CHUNK`] by default).
    prefill_chunk: usize,
    /// The run dtype (the embedding may be kept in bf16 under f32: `layers::linear::as_shipped`).
    dtype: DType,
    device: Device,
}

fn rms_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
    candle_nn::rms_norm(dim, eps, vb).map_err(|e| TransformerError::Weights(e.to_string()))
}

impl Transformer {
    /// Builds the model from HF Llama names: `model.embed_tokens`, `model.layers.{i}.self_attn.
    /// {q,k,v,o}_proj`, `.mlp.{gate,up,down}_proj`, `.input_layernorm`,
    /// `.post_attention_layernorm`, `model.norm`, and `lm_head` unless the embedding is tied.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let (dim, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let m = vb.pp("model");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = m.pp(format!("layers.{i}"));
                Ok(Block {
                    input_layernorm: rms_norm(dim, eps, vb.pp("input_layernorm"))?,
                    self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
                    post_attention_layernorm: rms_norm(
                        dim,
                        eps,
                        vb.pp("post_attention_layernorm"),
                    )?,
                    mlp: Mlp::new(dim, cfg.intermediate_size, vb.pp("mlp"))?,
                })
            })
            .collect::<Result<_>>()?;
        // One copy, as shipped, for the lookup and the tied output projection.
        let embed =
            layers::linear::get_as_shipped(&m, (cfg.vocab_size, dim), "embed_tokens.weight")
                .map_err(|e| TransformerError::Weights(e.to_string()))?;
        let lm_head = if cfg.tie_word_embeddings {
            candle_nn::Linear::new(embed.clone(), None).into()
        } else {
            linear(dim, cfg.vocab_size, vb.pp("lm_head"))?
        };
        Ok(Transformer {
            cfg: cfg.clone(),
            embed_tokens: Embedding::new(embed, dim),
            layers,
            norm: rms_norm(dim, eps, m.pp("norm"))?,
            lm_head,
            prefill_chunk: PREFILL_CHUNK,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Sets how many positions a prompt runs through the layers at once (at least 1; the same
    /// result whatever the size, up to rounding).
    pub fn with_prefill_chunk(mut self, positions: usize) -> Self {
        self.prefill_chunk = positions.max(1);
        self
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// An empty cache for `batch` sequences of up to `capacity` positions, in f32.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> crate::Result<KvCache> {
        KvCache::new(&self.cfg, batch, capacity, &self.device)
    }

    /// As [`Transformer::new_cache`], its keys and values kept in `dtype`: f32, or f16 / bf16
    /// (half the memory and half the cache bytes each decoded token reads; every key and value
    /// rounded once when written, as llama.cpp's default f16 cache does). Another dtype is an
    /// error.
    pub fn new_cache_in(
        &self,
        batch: usize,
        capacity: usize,
        dtype: candle_core::DType,
    ) -> crate::Result<KvCache> {
        KvCache::new_in(&self.cfg, batch, capacity, dtype, &self.device)
    }

    /// The last position's logits `[batch, vocab]` of `tokens` (`[batch][T]`), continuing after
    /// the positions already in `cache`. Empty or ragged input, out-of-range ids, another batch
    /// size than the cache's, or more positions than it holds are errors that leave it unchanged.
    pub fn forward_last<S: AsRef<[u32]>>(
        &self,
        tokens: &[S],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let tokens: Vec<&[u32]> = tokens.iter().map(|s| s.as_ref()).collect();
        // One entry into the thread pool for the whole pass (layers::pool).
        layers::pool::on_pool(|| self.forward_last_in_pool(&tokens, cache))
    }

    /// A prompt in chunks of `prefill_chunk` positions (each attending to the cache and to
    /// itself, the same result as one pass), the last chunk's logits; an error in any chunk leaves
    /// the cache as it was before the call.
    fn forward_last_in_pool(&self, tokens: &[&[u32]], cache: &mut KvCache) -> Result<Tensor> {
        let (_, t) = self.check(tokens, cache)?;
        let before = cache.len();
        let mut logits = Vec::with_capacity(1);
        for start in (0..t).step_by(self.prefill_chunk) {
            let end = (start + self.prefill_chunk).min(t);
            let chunk: Vec<&[u32]> = tokens.iter().map(|s| &s[start..end]).collect();
            match self.forward_chunk(&chunk, cache) {
                Ok(l) => {
                    logits.clear();
                    logits.push(l);
                }
                Err(e) => {
                    cache.rewind(before);
                    return Err(e);
                }
            }
        }
        logits
            .pop()
            .ok_or_else(|| TransformerError::Input("no tokens".into()))
    }

    /// One chunk of positions (checked by the caller) through the layers: its last position's
    /// logits.
    fn forward_chunk(&self, tokens: &[&[u32]], cache: &mut KvCache) -> Result<Tensor> {
        let (b, t) = (tokens.len(), tokens.first().map_or(0, |s| s.len()));
        let start = cache.len();
        let ids: Vec<u32> = tokens.iter().flat_map(|s| s.iter().copied()).collect();
        let mut x = self
            .embed_tokens
            .forward(&Tensor::from_vec(ids, (b, t), &self.device)?)?
            .to_dtype(self.dtype)?;
        let rope = rope_tables(&self.cfg, start, t, &self.device)?;
        let n = self.layers.len();
        for (i, (block, kv)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let h = block.input_layernorm.forward(&x)?;
            // Only the last position's output is read: in the last layer every position's keys
            // and values are still cached, but only the last query attends and the rest of the
            // block runs on that row alone (as llama.cpp skips outputs no one asked for). Rows
            // are independent from here on, so the result is the same.
            let last_only = i + 1 == n && t > 1;
            if last_only {
                x = x.narrow(1, t - 1, 1)?;
            }
            // Each sublayer's last product adds the residual as it stores its output.
            x = block
                .self_attn
                .forward_add(&h, &x, &rope, kv, start, last_only)?;
            let h = block.post_attention_layernorm.forward(&x)?;
            x = block.mlp.forward_add(&h, &x)?;
            layers::finite::ensure_finite(&x, || format!("in the output of layer {i} of {n}"))?;
        }
        cache.advance(t);
        let last = self.norm.forward(&x.narrow(1, x.dim(1)? - 1, 1)?)?;
        Ok(self.lm_head.forward(&last)?.squeeze(1)?)
    }

    /// Returns (batch, T) of valid input.
    fn check(&self, tokens: &[&[u32]], cache: &KvCache) -> Result<(usize, usize)> {
        let (b, t) = layers::tokens::check_batch(tokens, self.cfg.vocab_size, None)?;
        if b != cache.batch() {
            return Err(TransformerError::Input(format!(
                "the cache holds {} sequences, the input has {b}",
                cache.batch()
            )));
        }
        cache.reserve(t)?;
        Ok((b, t))
    }
}
