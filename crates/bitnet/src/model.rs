//! The BitNet b1.58 causal LM (2B4T architecture): embedding, decoder layers, final RMSNorm and
//! the (tied) output embedding, with a KV cache for decoding.
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};

use crate::cache::Cache;
use crate::config::Config;
use crate::decoder_layer::DecoderLayer;
use crate::error::{BitNetError, Result};
use crate::rotary::rope_tables;

#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `[vocab, hidden]`: the embedding itself when tied.
    lm_head: Tensor,
    /// The opt-in 4-bit copy of `lm_head` the logits take instead ([`Model::quantize_head`]).
    q4_head: Option<std::sync::Arc<kernels::quant_head::Q4Matrix>>,
    /// The opt-in lossless 12-bit copy of `lm_head` ([`Model::compact_head`]).
    compact_head: Option<std::sync::Arc<kernels::compact_head::CompactBf16Matrix>>,
    dtype: DType,
    device: Device,
}

impl Model {
    /// Builds the model from a `VarBuilder` over HF's tensor names (`model.layers.{i}...`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if vb.dtype() == DType::F16 {
            return Err(BitNetError::Input(
                "f16 is not supported: relu² overflows it (docs/bitnet.md §2); run in f32 or bf16"
                    .into(),
            ));
        }
        let weights = |e: candle_core::Error| BitNetError::Weights(e.to_string());
        let m = vb.pp("model");
        // 2B4T's embedding is bf16: kept so, exactly (half the bytes for the decode GEMV over the
        // tied output embedding, most of a decode step).
        let embed = layers::linear::get_as_shipped(
            &m,
            (cfg.vocab_size, cfg.hidden_size),
            "embed_tokens.weight",
        )
        .map_err(weights)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, m.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            layers::linear::get_as_shipped(&vb, (cfg.vocab_size, cfg.hidden_size), "lm_head.weight")
                .map_err(weights)?
        };
        Ok(Model {
            cfg: cfg.clone(),
            embed_tokens: Embedding::new(embed, cfg.hidden_size),
            layers,
            norm: crate::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head,
            q4_head: None,
            compact_head: None,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A cache for `batch` sequences of up to `capacity` positions (at most
    /// `max_position_embeddings`).
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<Cache> {
        if batch == 0 || capacity == 0 {
            return Err(BitNetError::Input(format!(
                "a cache needs a batch and a capacity of at least 1 (got {batch}, {capacity})"
            )));
        }
        if capacity > self.cfg.max_position_embeddings {
            return Err(BitNetError::Cache(format!(
                "capacity {capacity} is past max_position_embeddings {}",
                self.cfg.max_position_embeddings
            )));
        }
        // Keys and values of every layer at full capacity, allocated on the first append: their
        // size is checked here, so that a huge capacity is an error, not an aborted process.
        let c = &self.cfg;
        let what = format!("the KV cache for batch {batch} × capacity {capacity}");
        let n = layers::alloc::elements(
            &what,
            &[
                2 * self.layers.len(),
                batch,
                capacity,
                c.num_key_value_heads,
                c.head_dim,
            ],
        )?;
        layers::alloc::check_bytes(&what, n, self.dtype.size_in_bytes())?;
        Ok(Cache::new(self.layers.len(), batch, capacity))
    }

    /// Logits `[batch, len, vocab]` of `tokens` (equal-length sequences) at the positions after
    /// those already in `cache`, which this extends.
    pub fn forward<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &mut Cache) -> Result<Tensor> {
        let x = self.hidden_states_in_pool(tokens, cache)?;
        self.logits(&x)
    }

    /// The logits of the last position only, `[batch, vocab]` (decoding and prefill need no more).
    pub fn forward_last<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &mut Cache) -> Result<Tensor> {
        let x = self.hidden_states_in_pool(tokens, cache)?;
        let t = x.dim(1)?;
        self.logits(&x.narrow(1, t - 1, 1)?)?
            .squeeze(1)
            .map_err(Into::into)
    }

    /// [`Self::hidden_states`] with one entry into the thread pool for the whole pass
    /// (layers::pool).
    fn hidden_states_in_pool<S: AsRef<[u32]>>(
        &self,
        tokens: &[S],
        cache: &mut Cache,
    ) -> Result<Tensor> {
        let tokens: Vec<&[u32]> = tokens.iter().map(|s| s.as_ref()).collect();
        layers::pool::on_pool(|| self.hidden_states(&tokens, cache))
    }

    fn hidden_states<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &mut Cache) -> Result<Tensor> {
        let (b, t) = self.check(tokens, cache)?;
        let ids: Vec<u32> = tokens
            .iter()
            .flat_map(|s| s.as_ref().iter().copied())
            .collect();
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let mut x = self.embed_tokens.forward(&ids)?.to_dtype(self.dtype)?;
        let rope = rope_tables(
            self.cfg.head_dim,
            self.cfg.rope_theta,
            cache.len(),
            t,
            self.dtype,
            &self.device,
        )?;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &rope, cache, i)?;
            // Overflow (bf16 activations, extreme inputs) is reported where it first happens.
            layers::finite::ensure_finite(&x, || format!("in the output of layer {i} of {n}"))?;
        }
        cache.advance(t);
        Ok(self.norm.forward(&x)?)
    }

    /// Opt-in and lossy: the logits come from a 4-bit copy of the output embedding (groups of
    /// 32 weights with a scale each, activations quantised to 8 bits per group:
    /// `kernels::quant_head`), 0.5625 bytes per weight read per decoded token instead of 2 (bf16)
    /// or 4. On the HF fixtures (random weights, nearly flat logits) the logits move by up to
    /// 10% of the largest logit: the prompt's top token is kept, and greedy decoding leaves the
    /// reference's tokens after the first (`tests/it/fixture.rs`). CPU only: on another device
    /// it is an error naming the device. The float head stays for the embedding lookups (tied).
    pub fn quantize_head(&mut self) -> Result<()> {
        let q = kernels::quant_head::Q4Matrix::from_tensor(&self.lm_head)?;
        self.q4_head = Some(std::sync::Arc::new(q));
        Ok(())
    }

    /// Whether the logits take the 4-bit head.
    pub fn has_quantized_head(&self) -> bool {
        self.q4_head.is_some()
    }

    /// Opt-in and exact: the logits come from a lossless copy of a bf16 output embedding in 12
    /// bits per weight (`kernels::compact_head`: the high byte of each bf16 coded in 4 bits
    /// against a per-row table, the rare values that miss it listed apart), 1.5 bytes read per
    /// weight and decoded token instead of 2. Every weight decodes to its exact bf16, so the
    /// logits are the bf16 head's up to the order of f32 sums. An error when the output
    /// embedding holds values that are not bf16 (an f32 checkpoint), when its width is not a
    /// multiple of 32, and on a device other than the CPU. The float head stays for the
    /// embedding lookups (tied); the 4-bit head, when also asked for, takes precedence.
    pub fn compact_head(&mut self) -> Result<()> {
        let c = kernels::compact_head::CompactBf16Matrix::from_tensor(&self.lm_head)?;
        self.compact_head = Some(std::sync::Arc::new(c));
        Ok(())
    }

    /// Whether the logits take the lossless 12-bit head.
    pub fn has_compact_head(&self) -> bool {
        self.compact_head.is_some()
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        if let Some(q) = &self.q4_head {
            return Ok(q.forward(x)?);
        }
        if let Some(c) = &self.compact_head {
            return Ok(c.forward(x)?);
        }
        // Decoding (a row or a few) takes the threaded GEMV over the output embedding.
        let logits = kernels::cpu_linear::linear(&x.reshape((b * t, h))?, &self.lm_head, None)?
            .reshape((b, t, self.cfg.vocab_size))?;
        Ok(logits.to_dtype(DType::F32)?)
    }

    fn check<S: AsRef<[u32]>>(&self, tokens: &[S], cache: &Cache) -> Result<(usize, usize)> {
        let b = tokens.len();
        if b != cache.batch() {
            return Err(BitNetError::Input(format!(
                "{b} sequences for a cache of batch {}",
                cache.batch()
            )));
        }
        let (_, t) = layers::tokens::check_batch(tokens, self.cfg.vocab_size, None)?;
        cache.reserve(t)?;
        Ok((b, t))
    }

    /// Every BitLinear's packed weights, by checkpoint name (`model.layers.{i}.self_attn.q_proj`).
    pub fn ternary_layers(&self) -> Vec<(String, &kernels::ternary_matmul::TernaryWeights)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, p) in ["q_proj", "k_proj", "v_proj", "o_proj"]
                .iter()
                .zip(l.self_attn.projections())
            {
                out.push((format!("model.layers.{i}.self_attn.{name}"), p.weights()));
            }
            for (name, p) in ["gate_proj", "up_proj", "down_proj"]
                .iter()
                .zip(l.mlp.projections())
            {
                out.push((format!("model.layers.{i}.mlp.{name}"), p.weights()));
            }
        }
        out
    }

    /// Bytes of the weights as held: packed ternary matrices with their scales, and the float
    /// tensors (embedding, norms; the tied output embedding is the same tensor).
    pub fn weight_bytes(&self) -> WeightBytes {
        let mut w = WeightBytes::default();
        for l in &self.layers {
            for p in l
                .self_attn
                .projections()
                .into_iter()
                .chain(l.mlp.projections())
            {
                w.packed += p.weights().memory_bytes();
                w.ternary_params += p.in_dim() * p.out_dim();
            }
        }
        let size = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        w.float = size(self.embed_tokens.embeddings());
        if !self.cfg.tie_word_embeddings {
            w.float += size(&self.lm_head);
        }
        w.quantized_head = self.q4_head.as_ref().map_or(0, |q| q.bytes());
        w.compact_head = self.compact_head.as_ref().map_or(0, |c| c.bytes());
        w.float += self.cfg.hidden_size * (1 + 3 * self.layers.len()) * self.dtype.size_in_bytes()
            + self.cfg.intermediate_size * self.layers.len() * self.dtype.size_in_bytes();
        w
    }
}

/// What [`Model::weight_bytes`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// Packed BitLinear weights and scales.
    pub packed: usize,
    /// Ternary parameters they hold.
    pub ternary_params: usize,
    /// Embedding, norms (and an untied output embedding).
    pub float: usize,
    /// The 4-bit copy of the output embedding, when asked for ([`Model::quantize_head`]).
    pub quantized_head: usize,
    /// The lossless 12-bit copy of the output embedding, when asked for
    /// ([`Model::compact_head`]).
    pub compact_head: usize,
}
