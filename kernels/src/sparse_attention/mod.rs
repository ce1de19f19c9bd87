//! Smart Bird's kernels (docs/smartbird.md): the selection of each head's sparse key set from the
//! sketched attention matrix, and attention over the gathered keys.
//!
//! **Selection** ([`SketchTopk`]): for every batch, head `h` and query `i`, the `K` keys with the
//! largest `log Â[i, j] + G[b, h, i, j]` (ties: the smaller `j`), where `G` is Gumbel(0, 1) noise
//! (Gumbel-top-K: `K` draws *without replacement*, each with probability proportional to `Â`) or
//! zero (deterministic top-K, for inference). Padding keys are never selected; a query with fewer
//! than `K` candidates gets `-1` in the remaining slots. Optionally each (non-padding) query keeps
//! its own position first. The noise is a hash of (seed, b, h, i, j), [`gumbel`], so the CPU paths
//! and the GPU draw the same noise, different per head, and the same seed gives the same indices.
//!
//! **Attention** ([`SparseInput`]): `o[b, i, h] = softmax_s(scale · q[b, i, h] · k[b, idx_s, h])
//! · v[b, idx_s, h]` over the query's slots `s` (`-1` slots skipped; no keys gives zeros).
//! O(N·K·d).
//!
//! Layouts: `q, k, v, o [batch, seq_len, heads, head_dim]`; `log_probs [batch, seq_len, seq_len]`;
//! `mask [batch, seq_len]` (nonzero: token); `indices [batch, heads, seq_len, K]` (i32).
//!
//! Forms: references ([`sparse_attention_reference`], [`sketch_topk_reference`]: a full sort per
//! row), fast CPU paths (threaded; `select_nth_unstable` for top-K), and
//! `kernels/cuda/sparse_attention.cu` with [`plan`].
mod fast;
mod op;
pub mod plan;
mod reference;
#[cfg(target_arch = "x86_64")]
mod select_avx512;

pub use fast::{sketch_topk_cpu, sparse_attention_cpu};
pub use op::{sketch_topk, sparse_attention, Selection};
pub use reference::{sketch_topk_reference, sparse_attention_reference};

use crate::error::{check_dims, check_len, KernelError, Result};

pub(crate) const KERNEL: &str = "sparse_attention";

/// The hash behind the noise (splitmix64).
#[inline(always)]
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Gumbel(0, 1) noise for a counter: `u ∈ (0, 1)` from 24 hash bits (exact in f32), `−ln(−ln u)`.
pub fn gumbel(seed: u64, counter: u64) -> f32 {
    gumbel_of_bits(noise_bits(seed, counter))
}

/// The 24 hash bits behind [`gumbel`]'s noise for a counter.
#[inline(always)]
pub(crate) fn noise_bits(seed: u64, counter: u64) -> u32 {
    (splitmix64(seed ^ splitmix64(counter)) >> 40) as u32
}

/// The noise of 24 hash bits: increasing in them (`u` is).
pub(crate) fn gumbel_of_bits(bits: u32) -> f32 {
    let u = (bits as f32 + 0.5) / 16_777_216.0;
    -(-u.ln()).ln()
}

/// `[batch, seq_len, heads, head_dim]` attended over `keys` slots per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseShape {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub keys: usize,
}

impl std::fmt::Display for SparseShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[batch {}, seq_len {}, heads {}, head_dim {}, keys {}]",
            self.batch, self.seq_len, self.heads, self.head_dim, self.keys
        )
    }
}

impl SparseShape {
    pub fn new(
        batch: usize,
        seq_len: usize,
        heads: usize,
        head_dim: usize,
        keys: usize,
    ) -> Result<Self> {
        check_dims(
            KERNEL,
            &[
                ("batch", batch),
                ("seq_len", seq_len),
                ("heads", heads),
                ("head_dim", head_dim),
                ("keys", keys),
            ],
        )?;
        Ok(SparseShape {
            batch,
            seq_len,
            heads,
            head_dim,
            keys,
        })
    }

    pub fn elems(&self) -> usize {
        self.batch * self.seq_len * self.heads * self.head_dim
    }

    pub fn index_len(&self) -> usize {
        self.batch * self.heads * self.seq_len * self.keys
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SparseInput<'a> {
    pub shape: SparseShape,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub indices: &'a [i32],
    pub scale: f32,
}

impl SparseInput<'_> {
    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        for (arg, x) in [("q", self.q), ("k", self.k), ("v", self.v)] {
            check_len(KERNEL, arg, x.len(), s.elems(), &s)?;
        }
        check_len(KERNEL, "indices", self.indices.len(), s.index_len(), &s)?;
        if let Some(bad) = self
            .indices
            .iter()
            .find(|&&j| j < -1 || j >= s.seq_len as i32)
        {
            return Err(KernelError::Invalid {
                kernel: KERNEL,
                arg: "indices",
                message: format!(
                    "index {bad} is outside -1..{} (seq_len {})",
                    s.seq_len, s.seq_len
                ),
            });
        }
        Ok(())
    }
}

/// One selection call.
#[derive(Debug, Clone, Copy)]
pub struct SketchTopk<'a> {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub keys: usize,
    /// `[batch, seq_len, seq_len]`.
    pub log_probs: &'a [f32],
    /// `[batch, seq_len]`, nonzero for tokens; `None`: all tokens.
    pub mask: Option<&'a [u8]>,
    /// `Some(seed)`: Gumbel-top-K; `None`: deterministic top-K.
    pub gumbel_seed: Option<u64>,
    pub include_self: bool,
}

impl SketchTopk<'_> {
    pub fn shape(&self) -> Result<SparseShape> {
        SparseShape::new(self.batch, self.seq_len, self.heads, 1, self.keys)
    }

    pub fn validate(&self) -> Result<()> {
        let s = self.shape()?;
        check_len(
            KERNEL,
            "log_probs",
            self.log_probs.len(),
            self.batch * self.seq_len * self.seq_len,
            &s,
        )?;
        if let Some(m) = self.mask {
            check_len(KERNEL, "mask", m.len(), self.batch * self.seq_len, &s)?;
        }
        Ok(())
    }

    fn is_token(&self, b: usize, j: usize) -> bool {
        self.mask.is_none_or(|m| m[b * self.seq_len + j] != 0)
    }

    /// The score of key `j` for (b, h, i): `None` when it can never be selected.
    pub(crate) fn score(&self, b: usize, h: usize, i: usize, j: usize) -> Option<f32> {
        let noise = self
            .gumbel_seed
            .map(|seed| noise_bits(seed, self.counter(b, h, i, j)));
        self.score_of_bits(b, i, j, noise)
    }

    /// [`SketchTopk::score`] with the key's noise bits already drawn (`None`: no noise).
    #[inline]
    pub(crate) fn score_of_bits(
        &self,
        b: usize,
        i: usize,
        j: usize,
        noise: Option<u32>,
    ) -> Option<f32> {
        if !self.is_token(b, j) {
            return None;
        }
        if self.include_self && j == i && self.is_token(b, i) {
            return Some(f32::INFINITY);
        }
        let mut s = self.log_prob(b, i, j);
        if let Some(bits) = noise {
            s += gumbel_of_bits(bits);
        }
        (s != f32::NEG_INFINITY).then_some(s)
    }

    pub(crate) fn log_prob(&self, b: usize, i: usize, j: usize) -> f32 {
        let n = self.seq_len;
        self.log_probs[(b * n + i) * n + j]
    }

    /// The noise counter of (b, h, i, j): each head of each query draws its own.
    pub(crate) fn counter(&self, b: usize, h: usize, i: usize, j: usize) -> u64 {
        let n = self.seq_len;
        (((b * self.heads + h) * n + i) * n + j) as u64
    }
}

/// The order of candidates: larger score first, then smaller index.
pub(crate) fn rank(a: &(f32, usize), b: &(f32, usize)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}
