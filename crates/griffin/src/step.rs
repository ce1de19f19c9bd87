//! What one forward call covers: each token's absolute position in its sequence, or padding.
use candle_core::{DType, Device, Tensor};

/// Positions of a `[batch, seq_len]` chunk, and the tensors the layers derive from them.
#[derive(Debug)]
pub struct Step {
    pub batch: usize,
    pub seq_len: usize,
    /// `[batch * seq_len]`: the token's position in its sequence, or -1 for padding.
    pub pos: Vec<i64>,
    all_real: bool,
    /// `[batch, seq_len]` u8: 1 where a sequence starts (position 0): the RG-LRU resets there.
    reset: Tensor,
    real: Option<Tensor>,
    /// RoPE cos/sin at these positions: computed by the first attention layer, reused by the
    /// others (every attention layer of a model shares rotary_dim and theta).
    rope: std::cell::OnceCell<(Tensor, Tensor)>,
}

impl Step {
    pub fn new(
        batch: usize,
        seq_len: usize,
        pos: Vec<i64>,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let all_real = pos.iter().all(|&p| p >= 0);
        let reset: Vec<u8> = pos.iter().map(|&p| u8::from(p == 0)).collect();
        let reset = Tensor::from_vec(reset, (batch, seq_len), device)?;
        let real = if all_real {
            None
        } else {
            let mask: Vec<u8> = pos.iter().map(|&p| u8::from(p >= 0)).collect();
            Some(Tensor::from_vec(mask, (batch, seq_len), device)?)
        };
        Ok(Step {
            batch,
            seq_len,
            pos,
            all_real,
            reset,
            real,
            rope: std::cell::OnceCell::new(),
        })
    }

    pub fn all_real(&self) -> bool {
        self.all_real
    }

    pub fn is_real(&self, b: usize, t: usize) -> bool {
        self.pos[b * self.seq_len + t] >= 0
    }

    /// The RoPE tables of this step, computed by `make` the first time.
    pub fn rope_tables(
        &self,
        make: impl FnOnce() -> candle_core::Result<(Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        if let Some(t) = self.rope.get() {
            return Ok(t.clone());
        }
        let t = make()?;
        Ok(self.rope.get_or_init(|| t).clone())
    }

    pub fn reset(&self) -> &Tensor {
        &self.reset
    }

    /// `[batch, seq_len]` u8: 1 for tokens, 0 for padding; `None` when every step is a token.
    pub fn real(&self) -> Option<&Tensor> {
        self.real.as_ref()
    }

    /// `[batch, seq_len, 1]`: 1 for tokens, 0 for padding.
    pub fn real_mask(&self, dtype: DType) -> candle_core::Result<Tensor> {
        match &self.real {
            Some(m) => m.to_dtype(dtype)?.unsqueeze(2),
            None => Tensor::ones((self.batch, self.seq_len, 1), dtype, self.reset.device()),
        }
    }
}
