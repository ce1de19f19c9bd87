//! The BitNet b1.58 causal LM (2B4T architecture): embedding, decoder layers, final RMSNorm and
//! the (tied) output embedding, with a KV cache for decoding.
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{RmsNorm, VarBuilder};
use kernels::compact_head::CompactBf16Matrix;

use crate::cache::Cache;
use crate::config::Config;
use crate::decoder_layer::DecoderLayer;
use crate::error::{BitNetError, Result};
use crate::rotary::rope_tables;

/// A `[vocab, hidden]` table: the token embedding, the output embedding, or both when tied.
#[derive(Debug, Clone)]
enum VocabTable {
    /// As loaded, on any device.
    Float(Tensor),
    /// The lossless 12-bit form of a bf16 table on the CPU (`kernels::compact_head`).
    Compact(Arc<CompactBf16Matrix>),
}

impl VocabTable {
    /// The rows of `ids` (`[b, t]`) as `[b, t, hidden]` in `dtype`.
    fn lookup(
        &self,
        ids: &[u32],
        (b, t): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let rows = match self {
            VocabTable::Float(w) => {
                let ids = Tensor::from_slice(ids, ids.len(), device)?;
                w.index_select(&ids, 0)?
            }
            VocabTable::Compact(c) => {
                let mut rows = vec![0.0f32; ids.len() * c.cols()];
                for (&id, row) in ids.iter().zip(rows.chunks_mut(c.cols())) {
                    c.decode_rows(id as usize, row)?;
                }
                Tensor::from_vec(rows, (ids.len(), c.cols()), device)?
            }
        };
        let hidden = rows.dim(1)?;
        Ok(rows.reshape((b, t, hidden))?.to_dtype(dtype)?)
    }

    fn bytes(&self) -> usize {
        match self {
            VocabTable::Float(w) => w.elem_count() * w.dtype().size_in_bytes(),
            VocabTable::Compact(c) => c.bytes(),
        }
    }

    /// The table as a bf16 or float tensor on the CPU (the compact one decoded exactly, a block of
    /// rows at a time into bf16, so no f32 copy of the whole table is made).
    fn to_tensor(&self) -> Result<Tensor> {
        match self {
            VocabTable::Float(w) => Ok(w.clone()),
            VocabTable::Compact(c) => {
                let (rows, cols) = (c.rows(), c.cols());
                let mut values = Vec::with_capacity(rows * cols);
                let block = (1 << 16) / cols + 1;
                let mut wide = Vec::new();
                for first in (0..rows).step_by(block) {
                    wide.resize(block.min(rows - first) * cols, 0.0);
                    c.decode_rows(first, &mut wide)?;
                    values.extend(wide.iter().map(|&v| half::bf16::from_f32(v)));
                }
                Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    /// `[vocab, hidden]`.
    embed_tokens: VocabTable,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `[vocab, hidden]`: the embedding itself when tied (the same tensor or compact copy).
    lm_head: VocabTable,
    /// The opt-in 4-bit copy of `lm_head` the logits take instead ([`Model::quantize_head`]).
    q4_head: Option<Arc<kernels::quant_head::Q4Matrix>>,
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
        let mut model = Model {
            cfg: cfg.clone(),
            embed_tokens: VocabTable::Float(embed),
            layers,
            norm: crate::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head: VocabTable::Float(lm_head),
            q4_head: None,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        };
        // A bf16 output embedding on the CPU (2B4T's) is held in its lossless 12-bit form: the
        // same logits, 1.5 bytes read per weight and decoded token instead of 2 (docs/bitnet.md §4).
        if matches!(&model.lm_head, VocabTable::Float(t) if CompactBf16Matrix::suits(t)) {
            model.compact_head()?;
        }
        Ok(model)
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
        let mut x = self
            .embed_tokens
            .lookup(&ids, (b, t), self.dtype, &self.device)?;
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
    /// it is an error naming the device. The embedding lookups keep the exact table (tied).
    pub fn quantize_head(&mut self) -> Result<()> {
        let q = kernels::quant_head::Q4Matrix::from_tensor(&self.lm_head.to_tensor()?)?;
        self.q4_head = Some(Arc::new(q));
        Ok(())
    }

    /// Whether the logits take the 4-bit head.
    pub fn has_quantized_head(&self) -> bool {
        self.q4_head.is_some()
    }

    /// Exact: the output embedding held as a lossless copy of its bf16 values in 12 bits per
    /// weight (`kernels::compact_head`: the high byte of each bf16 coded in 4 bits against a
    /// per-row table, the rare values that miss it listed apart), 1.5 bytes read per weight and
    /// decoded token instead of 2. Every weight decodes to its exact bf16, so the logits are the
    /// bf16 head's up to the order of f32 sums. When tied, the embedding lookups decode their rows
    /// from the same copy and the bf16 tensor is dropped. [`Model::new`] does this itself for a
    /// bf16 output embedding on the CPU; asked for here it also takes an f32 one whose values are
    /// all bf16. An error when the values are not bf16 (an f32 checkpoint), when the width is not
    /// a multiple of 32, and on a device other than the CPU. The 4-bit head, when also asked for,
    /// takes precedence for the logits.
    pub fn compact_head(&mut self) -> Result<()> {
        let VocabTable::Float(head) = &self.lm_head else {
            return Ok(());
        };
        let c = VocabTable::Compact(Arc::new(CompactBf16Matrix::from_tensor(head)?));
        if self.cfg.tie_word_embeddings {
            self.embed_tokens = c.clone();
        }
        self.lm_head = c;
        Ok(())
    }

    /// The opposite of [`Model::compact_head`]: the output embedding (and the tied token
    /// embedding) back as a plain bf16 tensor, decoded exactly from the 12-bit copy, 2 bytes read
    /// per weight and token. For comparing the two forms; the logits stay the same up to the
    /// order of f32 sums.
    pub fn plain_head(&mut self) -> Result<()> {
        if let VocabTable::Compact(_) = &self.lm_head {
            let t = VocabTable::Float(self.lm_head.to_tensor()?);
            if self.cfg.tie_word_embeddings {
                self.embed_tokens = t.clone();
            }
            self.lm_head = t;
        }
        Ok(())
    }

    /// Whether the output embedding is held in the lossless 12-bit form.
    pub fn has_compact_head(&self) -> bool {
        matches!(self.lm_head, VocabTable::Compact(_))
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        if let Some(q) = &self.q4_head {
            return Ok(q.forward(x)?);
        }
        match &self.lm_head {
            VocabTable::Compact(c) => Ok(c.forward(x)?),
            VocabTable::Float(w) => {
                // Decoding (a row or a few) takes the threaded GEMV over the output embedding.
                let logits = kernels::cpu_linear::linear(&x.reshape((b * t, h))?, w, None)?
                    .reshape((b, t, self.cfg.vocab_size))?;
                Ok(logits.to_dtype(DType::F32)?)
            }
        }
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
    /// tensors (embedding, norms; the tied output embedding is the same tensor or compact copy).
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
        let mut tables = vec![&self.embed_tokens];
        if !self.cfg.tie_word_embeddings {
            tables.push(&self.lm_head);
        }
        for t in tables {
            match t {
                VocabTable::Float(_) => w.float += t.bytes(),
                VocabTable::Compact(_) => w.compact_head += t.bytes(),
            }
        }
        w.quantized_head = self.q4_head.as_ref().map_or(0, |q| q.bytes());
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
    /// Float embedding (unless held compact), norms (and an untied float output embedding).
    pub float: usize,
    /// The 4-bit copy of the output embedding, when asked for ([`Model::quantize_head`]).
    pub quantized_head: usize,
    /// The lossless 12-bit form of the output embedding (and of the tied token embedding), when
    /// held so ([`Model::compact_head`]).
    pub compact_head: usize,
}
