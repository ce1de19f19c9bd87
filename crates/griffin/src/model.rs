//! The model: embedding (scaled by sqrt(D) rounded to bf16), residual blocks, final RMSNorm, tied
//! output embedding and logit soft cap (docs/griffin.md §1).
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::config::Config;
use crate::error::{GriffinError, Result};
use crate::residual_block::ResidualBlock;
use crate::rms_norm::RmsNorm;
use crate::state::State;
use crate::step::Step;

/// Positions a sequence may reach: RoPE's angles are `position × frequency` with the position in
/// f32, which holds every integer exactly only up to 2^24 (as HF's reference computes them).
pub const MAX_POSITIONS: usize = 1 << 24;

#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed_tokens: Embedding,
    layers: Vec<ResidualBlock>,
    final_norm: RmsNorm,
    /// sqrt(hidden_size) rounded to bf16, as the checkpoints were trained (HF `normalizer`).
    embed_scale: f64,
    /// Long prompts run through the layers this many tokens at a time (bounds attention memory;
    /// same result as one pass). 512 by default: one sequence's chunk then keeps its products
    /// under `kernels::cpu_gemm::MAX_ROWS` rows, where frugal's own product (its GLU and residual
    /// additions inside it) takes them; Griffin small's 2048- and 4096-token prompts ran
    /// 1.06–1.16× faster than in 1024-token chunks, and 256-token chunks were slower again.
    prefill_chunk: usize,
    dtype: DType,
    device: Device,
}

impl Model {
    /// Builds the model from `model.*` tensors (HF RecurrentGemmaForCausalLM names).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vb = vb.pp("model");
        let build = || -> candle_core::Result<_> {
            // Kept as shipped (bf16 values stay bf16 under f32), widened after the lookup; the
            // tied output embedding reads the same copy.
            let table = layers::linear::get_as_shipped(
                &vb,
                (cfg.vocab_size, cfg.hidden_size),
                "embed_tokens.weight",
            )?;
            let embed_tokens = Embedding::new(table, cfg.hidden_size);
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| ResidualBlock::new(cfg, cfg.block_type(i), vb.pp(format!("layers.{i}"))))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let final_norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("final_norm"))?;
            Ok((embed_tokens, layers, final_norm))
        };
        let (embed_tokens, layers, final_norm) = build().map_err(layers::error::weights)?;
        let embed_scale = if cfg.embeddings_scale_by_sqrt_dim {
            half::bf16::from_f64((cfg.hidden_size as f64).sqrt()).to_f64()
        } else {
            1.0
        };
        Ok(Model {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            final_norm,
            embed_scale,
            prefill_chunk: 512,
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

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Sets how many tokens a prefill runs through the layers at once (at least 1).
    pub fn with_prefill_chunk(mut self, tokens: usize) -> Self {
        self.prefill_chunk = tokens.max(1);
        self
    }

    /// A fresh state for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> Result<State> {
        State::new(&self.cfg, batch, self.dtype, &self.device)
    }

    /// Logits `[B, T, V]` (f32) for `tokens` (`[B][T]`), continuing each sequence from `state`.
    pub fn forward<S: AsRef<[u32]>>(&self, tokens: &[S], state: &mut State) -> Result<Tensor> {
        let mask: Vec<Vec<bool>> = tokens
            .iter()
            .map(|s| vec![true; s.as_ref().len()])
            .collect();
        self.forward_padded(tokens, &mask, state)
    }

    /// As [`Model::forward`], where `real[b][t]` is false at padding (left or right): padding
    /// changes neither the other tokens' outputs nor the state.
    pub fn forward_padded<S: AsRef<[u32]>>(
        &self,
        tokens: &[S],
        real: &[Vec<bool>],
        state: &mut State,
    ) -> Result<Tensor> {
        let tokens: Vec<&[u32]> = tokens.iter().map(|s| s.as_ref()).collect();
        self.check(&tokens, real, state)?;
        // One entry into the thread pool for the whole pass (layers::pool).
        layers::pool::on_pool(|| self.run(&tokens, real, state, false))
    }

    /// Logits `[B, V]` (f32) of each sequence's last token only: the prompt runs through every
    /// layer, but the output projection (vocabulary-sized) only for the token that is sampled
    /// next. Every token of `tokens` is real (no padding).
    pub fn forward_last<S: AsRef<[u32]>>(&self, tokens: &[S], state: &mut State) -> Result<Tensor> {
        let tokens: Vec<&[u32]> = tokens.iter().map(|s| s.as_ref()).collect();
        let real: Vec<Vec<bool>> = tokens.iter().map(|s| vec![true; s.len()]).collect();
        self.check(&tokens, &real, state)?;
        Ok(layers::pool::on_pool(|| self.run(&tokens, &real, state, true))?.squeeze(1)?)
    }

    /// Rejects empty input, ragged rows, a state of another batch size, out-of-range ids.
    fn check(&self, tokens: &[&[u32]], real: &[Vec<bool>], state: &State) -> Result<()> {
        let (batch, t) = layers::tokens::check_batch(tokens, self.cfg.vocab_size, None)?;
        if real.len() != batch || real.iter().any(|m| m.len() != t) {
            return Err(GriffinError::Input(format!(
                "every sequence and mask row must have one length (the first has {t}): pad them"
            )));
        }
        let seen = state.positions().iter().copied().max().unwrap_or(0);
        if seen as u64 + t as u64 > MAX_POSITIONS as u64 {
            return Err(GriffinError::Input(format!(
                "{seen} positions seen + {t} new exceed {MAX_POSITIONS}, the positions RoPE \
                 computes exactly (f32 positions are exact integers up to 2^24)"
            )));
        }
        if state.batch() != batch {
            return Err(GriffinError::Input(format!(
                "state holds {} sequences, input has {batch}",
                state.batch()
            )));
        }
        Ok(())
    }

    /// Runs the layers chunk by chunk; logits of every position, or of the last one only.
    ///
    /// Its callers run it inside rayon's pool (`layers::pool::on_pool`): the threaded kernels it
    /// calls (dozens per decoded token) then start on a pool thread, instead of each waking the
    /// pool from outside and putting the caller to sleep until it finishes.
    fn run(
        &self,
        tokens: &[&[u32]],
        real: &[Vec<bool>],
        state: &mut State,
        last_only: bool,
    ) -> Result<Tensor> {
        let t = tokens[0].len();
        let mut logits = Vec::new();
        let mut start = 0;
        while start < t {
            let len = self.prefill_chunk.min(t - start);
            let chunk: Vec<&[u32]> = tokens.iter().map(|s| &s[start..start + len]).collect();
            let chunk_real: Vec<&[bool]> = real.iter().map(|m| &m[start..start + len]).collect();
            let x = self.forward_chunk(&chunk, &chunk_real, state)?;
            start += len;
            if !last_only {
                logits.push(self.logits(&x)?);
            } else if start == t {
                logits.push(self.logits(&x.narrow(1, len - 1, 1)?)?);
            }
        }
        Ok(Tensor::cat(&logits, 1)?)
    }

    /// Final norm, tied output embedding, soft cap; f32.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.final_norm.forward(x)?;
        // Decoding (a row or a few) takes the threaded GEMV over the embedding.
        let logits = kernels::cpu_linear::linear(&x, self.embed_tokens.embeddings(), None)?
            .to_dtype(DType::F32)?;
        layers::finite::ensure_finite(&logits, || "in the logits".to_string())?;
        let Some(cap) = self.cfg.logits_soft_cap else {
            return Ok(logits);
        };
        // cap · tanh(logits / cap): one vectorised pass on the CPU (a vocabulary-sized row per
        // decoded token), tensor ops elsewhere.
        Ok(kernels::fused::soft_cap(&logits, cap)?)
    }

    fn forward_chunk(
        &self,
        tokens: &[&[u32]],
        real: &[&[bool]],
        state: &mut State,
    ) -> Result<Tensor> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let mut pos = Vec::with_capacity(b * t);
        for (bi, mask) in real.iter().enumerate() {
            for &is_real in mask.iter() {
                if is_real {
                    pos.push(state.next_pos[bi]);
                    state.next_pos[bi] += 1;
                } else {
                    pos.push(-1);
                }
            }
        }
        let step = Step::new(b, t, pos, &self.device)?;
        let ids: Vec<u32> = tokens.iter().flat_map(|s| s.iter()).copied().collect();
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        // Widened to the run dtype before the scale, as the reference scales in its dtype.
        let mut x = (self.embed_tokens.forward(&ids)?.to_dtype(self.dtype)? * self.embed_scale)?;
        let n = self.layers.len();
        for (i, (layer, layer_state)) in self.layers.iter().zip(state.layers.iter_mut()).enumerate()
        {
            x = layer.forward(&x, layer_state, &step)?;
            // Overflow (bf16 activations, extreme inputs) is reported where it first happens.
            layers::finite::ensure_finite(&x, || format!("in the output of layer {i} of {n}"))?;
        }
        Ok(x)
    }
}
