//! Fastformer's additive attention (Wu et al. 2021 §3; docs/fastformer.md), fused: per sequence and
//! head,
//!
//! ```text
//! α = softmax_t((w_q·q_t + b_q)/sqrt(d) + mask_t);  q̄ = Σ_t α_t q_t      (global query)
//! p_t = k_t ⊙ q̄
//! β = softmax_t((w_k·p_t + b_k)/sqrt(d) + mask_t);  k̄ = Σ_t β_t p_t      (global key)
//! u_t = k̄ ⊙ v_t
//! ```
//!
//! with `mask_t = (1 − m_t)·(−10000)` as the official code. [`ScoreForm::Full`] is the official
//! code's score layer (`nn.Linear(hidden, heads)`: every head reads all hidden dims, plus a
//! bias); [`ScoreForm::PerHead`] is the paper's (each head reads its own `head_dim` dims).
//! Linear in sequence length. f32.
//!
//! Forms: [`additive_attention_reference`], [`additive_attention_cpu`] (fast),
//! `kernels/cuda/additive_attention.cu` with [`plan::plan`], and the candle op
//! [`op::additive_attention`].
mod fast;
pub mod op;
pub mod plan;
mod reference;

pub use fast::additive_attention_cpu;
pub use op::additive_attention;
pub use reference::additive_attention_reference;

use crate::error::{check_dims, check_len, Result};

pub(crate) const KERNEL: &str = "additive_attention";

/// How the score layers read a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreForm {
    /// `w: [heads, hidden]`: every head's score reads all hidden dims (the official code).
    Full,
    /// `w: [heads, head_dim]`: each head reads its own dims (the paper).
    PerHead,
}

/// `[batch, seq_len, heads * head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdditiveShape {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AdditiveShape {
    pub fn new(batch: usize, seq_len: usize, heads: usize, head_dim: usize) -> Result<Self> {
        check_dims(
            KERNEL,
            &[
                ("batch", batch),
                ("seq_len", seq_len),
                ("heads", heads),
                ("head_dim", head_dim),
            ],
        )?;
        Ok(AdditiveShape {
            batch,
            seq_len,
            heads,
            head_dim,
        })
    }

    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of q, k, v and u.
    pub fn len(&self) -> usize {
        self.batch * self.seq_len * self.hidden()
    }

    /// Never true: a shape is validated non-empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for AdditiveShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[batch {}, seq_len {}, heads {} x head_dim {}]",
            self.batch, self.seq_len, self.heads, self.head_dim
        )
    }
}

/// The inputs of one call, on the host.
#[derive(Debug, Clone, Copy)]
pub struct AdditiveInput<'a> {
    pub shape: AdditiveShape,
    pub form: ScoreForm,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    /// `[batch, seq_len]`: 1 token, 0 padding. `None`: all tokens.
    pub mask: Option<&'a [f32]>,
    pub wq: &'a [f32],
    pub bq: Option<&'a [f32]>,
    pub wk: &'a [f32],
    pub bk: Option<&'a [f32]>,
}

impl AdditiveInput<'_> {
    /// Score weights per head: `hidden` (full) or `head_dim` (per head).
    pub fn score_width(&self) -> usize {
        match self.form {
            ScoreForm::Full => self.shape.hidden(),
            ScoreForm::PerHead => self.shape.head_dim,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        let check = |arg, found, expected| check_len(KERNEL, arg, found, expected, &s);
        check("q", self.q.len(), s.len())?;
        check("k", self.k.len(), s.len())?;
        check("v", self.v.len(), s.len())?;
        if let Some(m) = self.mask {
            check("mask", m.len(), s.batch * s.seq_len)?;
        }
        check("wq", self.wq.len(), s.heads * self.score_width())?;
        check("wk", self.wk.len(), s.heads * self.score_width())?;
        if let Some(b) = self.bq {
            check("bq", b.len(), s.heads)?;
        }
        if let Some(b) = self.bk {
            check("bk", b.len(), s.heads)?;
        }
        Ok(())
    }
}

/// `u` `[batch, seq_len, hidden]` and the pooled vectors `[batch, hidden]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdditiveOutput {
    pub u: Vec<f32>,
    pub pooled_q: Vec<f32>,
    pub pooled_k: Vec<f32>,
}
