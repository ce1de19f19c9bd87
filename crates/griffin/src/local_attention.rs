//! Local multi-query attention (docs/griffin.md §4; HF `RecurrentGemmaSdpaAttention`): RoPE on the
//! first
//! `rotary_dim` dimensions of each head (rotate-half layout), a query at position i sees the keys
//! at positions i − window < j ≤ i, and the cache is a ring of `window` key/value slots per
//! sequence, so its size never grows with the sequence.
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use layers::Linear;

use crate::config::Config;
use crate::step::Step;

#[derive(Debug, Clone)]
pub struct LocalAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    rope_theta: f64,
    window: usize,
}

/// The ring buffer of one attention layer: slot `p % window` holds the key/value of position p.
#[derive(Debug, Clone)]
pub struct AttentionState {
    /// `[B, window, kv_heads * head_dim]`.
    pub k: Tensor,
    pub v: Tensor,
    /// `[B * window]`: the position each slot holds, -1 when empty.
    pub slot_pos: Vec<i64>,
}

impl AttentionState {
    /// Sized from the config's `attention_window_size` with checked arithmetic, held against the
    /// machine's memory before anything is allocated.
    pub fn new(cfg: &Config, batch: usize, dtype: DType, device: &Device) -> crate::Result<Self> {
        let window = cfg.attention_window_size;
        let dims = [batch, window, cfg.num_key_value_heads * cfg.head_dim];
        let what =
            format!("the local-attention ring for batch {batch} × attention_window_size {window}");
        let n = layers::alloc::elements(&what, &dims)?;
        layers::alloc::check_bytes(&what, n, 2 * dtype.size_in_bytes())?;
        Ok(AttentionState {
            k: layers::alloc::zeros(&what, &dims, dtype, device)?,
            v: layers::alloc::zeros(&what, &dims, dtype, device)?,
            slot_pos: layers::alloc::filled_vec(&what, batch * window, -1)?,
        })
    }
}

impl LocalAttention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, h, kv, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        Ok(LocalAttention {
            q_proj: Linear::load(d, h * hd, false, &vb.pp("q_proj"))?,
            k_proj: Linear::load(d, kv * hd, false, &vb.pp("k_proj"))?,
            v_proj: Linear::load(d, kv * hd, false, &vb.pp("v_proj"))?,
            o_proj: Linear::load(h * hd, d, true, &vb.pp("o_proj"))?,
            heads: h,
            kv_heads: kv,
            head_dim: hd,
            rotary_dim: cfg.rotary_dim(),
            rope_theta: cfg.rope_theta,
            window: cfg.attention_window_size,
        })
    }

    /// cos and sin `[B, T, 1, rotary_dim / 2]` at each token's position (f32, as HF).
    fn rope_tables(&self, step: &Step, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.rotary_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                (1.0 / self
                    .rope_theta
                    .powf((2 * i) as f64 / self.rotary_dim as f64)) as f32
            })
            .collect();
        let mut cos = Vec::with_capacity(step.pos.len() * half);
        let mut sin = Vec::with_capacity(step.pos.len() * half);
        for &p in &step.pos {
            for &f in &inv_freq {
                let angle = p.max(0) as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let shape = (step.batch, step.seq_len, 1, half);
        Ok((
            Tensor::from_vec(cos, shape, device)?,
            Tensor::from_vec(sin, shape, device)?,
        ))
    }

    /// Rotates the first `rotary_dim` dims of `x` `[B, T, heads, head_dim]` (rotate-half).
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        kernels::fused::rope_rotate_half(x, cos, sin, self.rotary_dim)
    }

    pub fn forward(
        &self,
        x: &Tensor,
        state: &mut AttentionState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        self.o_proj.forward(&self.attend_all(x, state, step)?)
    }

    /// [`LocalAttention::forward`] plus `residual` (the residual block's input), added by the
    /// output projection as it stores its tiles.
    pub fn forward_add(
        &self,
        x: &Tensor,
        residual: &Tensor,
        state: &mut AttentionState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        self.o_proj
            .forward_add(&self.attend_all(x, state, step)?, residual)
    }

    /// Every head's attention output before the output projection, `[B, T, heads · head_dim]`.
    fn attend_all(
        &self,
        x: &Tensor,
        state: &mut AttentionState,
        step: &Step,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let (cos, sin) = step.rope_tables(|| self.rope_tables(step, x.device()))?;
        let q = self.rope(&self.q_proj.forward(x)?.reshape((b, t, h, hd))?, &cos, &sin)?;
        let k = self.rope(
            &self.k_proj.forward(x)?.reshape((b, t, kv, hd))?,
            &cos,
            &sin,
        )?;
        let k = k.reshape((b, t, kv * hd))?;
        let v = self.v_proj.forward(x)?;
        // Queries in blocks, the ring advancing after each: a query then scores at most
        // window + block keys, so attention costs O(T·window), not O(T²).
        let block = self.window.clamp(64, 512);
        let mut outs = Vec::with_capacity(t.div_ceil(block));
        let mut start = 0;
        while start < t {
            let len = block.min(t - start);
            let pos: Vec<i64> = (0..b)
                .flat_map(|bi| {
                    step.pos[bi * t + start..bi * t + start + len]
                        .iter()
                        .copied()
                })
                .collect();
            outs.push(self.attend(
                &q.narrow(1, start, len)?,
                &k.narrow(1, start, len)?,
                &v.narrow(1, start, len)?,
                &pos,
                state,
            )?);
            start += len;
        }
        Tensor::cat(&outs, 1)
    }

    /// Attention of queries `q` `[B, T, H, hd]` at positions `pos` over the ring and the block's
    /// own keys/values `k`, `v` `[B, T, kv * hd]`; then stores the block in the ring.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pos: &[i64],
        state: &mut AttentionState,
    ) -> candle_core::Result<Tensor> {
        let (b, t, h, hd) = q.dims4()?;
        let kv = self.kv_heads;
        let s = self.window + t;
        let keys = Tensor::cat(&[&state.k, k], 1)?;
        let values = Tensor::cat(&[&state.v, v], 1)?;
        let mut key_pos = Vec::with_capacity(b * s);
        for bi in 0..b {
            key_pos.extend_from_slice(&state.slot_pos[bi * self.window..(bi + 1) * self.window]);
            key_pos.extend_from_slice(&pos[bi * t..(bi + 1) * t]);
        }
        // One online-softmax pass per query over its visible keys on the CPU (no mask, no score
        // matrix); masked tensor ops elsewhere.
        let out = kernels::window_attention::positional_attention(
            q,
            &keys.reshape((b, s, kv, hd))?,
            &values.reshape((b, s, kv, hd))?,
            pos,
            &key_pos,
            self.window,
            (hd as f32).powf(-0.5),
        )?;
        self.update_ring(state, &keys, &values, &key_pos, b, s)?;
        out.reshape((b, t, h * hd))
    }

    /// Keeps, for each slot, the newest key whose position maps to it.
    fn update_ring(
        &self,
        state: &mut AttentionState,
        keys: &Tensor,
        values: &Tensor,
        key_pos: &[i64],
        b: usize,
        s: usize,
    ) -> candle_core::Result<()> {
        let w = self.window;
        let mut src = Vec::with_capacity(b * w);
        let mut slot_pos = vec![-1i64; b * w];
        for bi in 0..b {
            let mut best = vec![None::<(i64, usize)>; w];
            for (si, &p) in key_pos[bi * s..(bi + 1) * s].iter().enumerate() {
                if p < 0 {
                    continue;
                }
                let slot = (p as usize) % w;
                if best[slot].is_none_or(|(bp, _)| p > bp) {
                    best[slot] = Some((p, si));
                }
            }
            for (slot, entry) in best.iter().enumerate() {
                let (p, si) = entry.unwrap_or((-1, slot));
                slot_pos[bi * w + slot] = p;
                src.push((bi * s + si) as u32);
            }
        }
        let idx = Tensor::from_vec(src, b * w, keys.device())?;
        let width = keys.dim(D::Minus1)?;
        state.k = keys
            .flatten_to(1)?
            .index_select(&idx, 0)?
            .reshape((b, w, width))?;
        state.v = values
            .flatten_to(1)?
            .index_select(&idx, 0)?
            .reshape((b, w, width))?;
        state.slot_pos = slot_pos;
        Ok(())
    }
}
