//! Gated retention (YOCO's gRetNet self-decoder, docs/yoco.md §2): per batch and head, a `dk × dv`
//! state with a scalar, data-dependent decay per token:
//!
//! ```text
//! S_t = exp(g_t) · S_{t−1} + k_tᵀ v_t        o_t = q_t · S_t          (g_t = log γ_t ≤ 0)
//! ```
//!
//! `k` arrives already scaled (YOCO: by `dk^-0.5`); the state is f32 whatever the model's dtype.
//! Layout: `q, k [batch, seq_len, heads, dk]`, `v, o [batch, seq_len, heads, dv]`, `log_decay
//! [batch, seq_len, heads]`, state `[batch, heads, dk, dv]`.
//!
//! Forms: [`gated_retention_reference`] (the recurrence, one step at a time: also the decode
//! step), [`gated_retention_cpu`] (chunkwise: intra-chunk masked products plus the carried
//! state, threaded over batch × head), and `kernels/cuda/gated_retention.cu` (chunkwise, a block
//! per batch × head × 32 value columns) with [`plan::plan`].
mod fast;
mod op;
pub mod plan;
mod reference;

pub use fast::{gated_retention_cpu, CHUNK};
pub use op::gated_retention;
pub use reference::gated_retention_reference;

use crate::error::{check_dims, check_len, Result};

pub(crate) const KERNEL: &str = "gated_retention";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionShape {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub dk: usize,
    pub dv: usize,
}

impl std::fmt::Display for RetentionShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[batch {}, seq_len {}, heads {}, dk {}, dv {}]",
            self.batch, self.seq_len, self.heads, self.dk, self.dv
        )
    }
}

impl RetentionShape {
    pub fn new(batch: usize, seq_len: usize, heads: usize, dk: usize, dv: usize) -> Result<Self> {
        check_dims(
            KERNEL,
            &[
                ("batch", batch),
                ("seq_len", seq_len),
                ("heads", heads),
                ("dk", dk),
                ("dv", dv),
            ],
        )?;
        Ok(RetentionShape {
            batch,
            seq_len,
            heads,
            dk,
            dv,
        })
    }

    pub fn state_len(&self) -> usize {
        self.batch * self.heads * self.dk * self.dv
    }
}

/// One call's inputs, on the host.
#[derive(Debug, Clone, Copy)]
pub struct RetentionInput<'a> {
    pub shape: RetentionShape,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub log_decay: &'a [f32],
    /// The state before the first token; `None`: zeros.
    pub state: Option<&'a [f32]>,
}

impl RetentionInput<'_> {
    pub fn validate(&self) -> Result<()> {
        let s = self.shape;
        let rows = s.batch * s.seq_len * s.heads;
        check_len(KERNEL, "q", self.q.len(), rows * s.dk, &s)?;
        check_len(KERNEL, "k", self.k.len(), rows * s.dk, &s)?;
        check_len(KERNEL, "v", self.v.len(), rows * s.dv, &s)?;
        check_len(KERNEL, "log_decay", self.log_decay.len(), rows, &s)?;
        if let Some(state) = self.state {
            check_len(KERNEL, "state", state.len(), s.state_len(), &s)?;
        }
        Ok(())
    }
}

/// `o [batch, seq_len, heads, dv]` and the state after the last token.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionOutput {
    pub o: Vec<f32>,
    pub state: Vec<f32>,
}
