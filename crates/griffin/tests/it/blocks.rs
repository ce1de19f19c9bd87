//! Each block against a plain reference loop written from the equations (docs/griffin.md §2–4), on
//! random weights, with prompts shorter than, equal to and longer than the attention window.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use crate::common::flat;
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use griffin::conv1d::Conv1d;
use griffin::local_attention::{AttentionState, LocalAttention};
use griffin::rg_lru::RgLru;
use griffin::step::Step;
use griffin::Config;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn vb(tensors: HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

fn step(batch: usize, t: usize, start: i64) -> Step {
    let pos = (0..batch)
        .flat_map(|_| (0..t as i64).map(move |i| start + i))
        .collect();
    Step::new(batch, t, pos, &Device::Cpu).unwrap()
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}[{i}]: {g} vs reference {w}"
        );
    }
}

#[test]
fn conv1d_matches_the_tap_loop_and_continues_from_its_state() {
    let (b, t, c, k) = (2, 11, 5, 4);
    let mut rng = Rng(1);
    let (w, bias, x) = (
        rng.vec(c * k, 1.0),
        rng.vec(c, 1.0),
        rng.vec(b * t * c, 1.0),
    );
    let conv = Conv1d::new(
        c,
        k,
        vb(HashMap::from([
            ("weight".to_string(), tensor(&w, &[c, 1, k])),
            ("bias".to_string(), tensor(&bias, &[c])),
        ])),
    )
    .unwrap();
    // out_t = bias + Σ_s w[c, K-1-s] · x_{t-s}: the last tap on the current token.
    let mut want = vec![0.0f32; b * t * c];
    for bi in 0..b {
        for ti in 0..t {
            for ci in 0..c {
                let mut acc = bias[ci];
                for s in 0..k.min(ti + 1) {
                    acc += w[ci * k + (k - 1 - s)] * x[(bi * t + ti - s) * c + ci];
                }
                want[(bi * t + ti) * c + ci] = acc;
            }
        }
    }
    let zeros = Tensor::zeros((b, k - 1, c), DType::F32, &Device::Cpu).unwrap();
    let (out, _) = conv
        .forward(&tensor(&x, &[b, t, c]), &zeros, &step(b, t, 0))
        .unwrap();
    close(&flat(&out), &want, "conv");
    // Two pieces, the second from the first's state.
    let xt = tensor(&x, &[b, t, c]);
    let (o1, s1) = conv
        .forward(&xt.narrow(1, 0, 4).unwrap(), &zeros, &step(b, 4, 0))
        .unwrap();
    let (o2, _) = conv
        .forward(&xt.narrow(1, 4, t - 4).unwrap(), &s1, &step(b, t - 4, 4))
        .unwrap();
    close(
        &flat(&Tensor::cat(&[o1, o2], 1).unwrap()),
        &want,
        "conv in two pieces",
    );
}

#[test]
fn rg_lru_matches_the_per_step_loop() {
    // f32: the fused CPU pass; bf16: the tensor ops and the linear scan (bf16 rounding).
    rg_lru_case(DType::F32, 1e-5, 1e-4);
    rg_lru_case(DType::BF16, 3e-2, 3e-2);
}

fn rg_lru_case(dtype: DType, abs: f32, rel: f32) {
    let (b, t, heads, blk) = (2, 9, 3, 4);
    let w = heads * blk;
    let mut rng = Rng(2);
    let param = rng.vec(w, 2.0);
    let (wx, bx, wa, ba) = (
        rng.vec(heads * blk * blk, 0.5),
        rng.vec(w, 0.5),
        rng.vec(heads * blk * blk, 0.5),
        rng.vec(w, 0.5),
    );
    let x = rng.vec(b * t * w, 1.0);
    let h0 = rng.vec(b * w, 1.0);
    let branch = rng.vec(b * t * w, 3.0);
    let gelu = |v: f32| {
        let v = v as f64;
        (0.5 * v
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh()))
            as f32
    };
    let tensors = |m: HashMap<String, Tensor>| {
        let m = m
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
            .collect();
        VarBuilder::from_tensors(m, dtype, &Device::Cpu)
    };
    let lru = RgLru::new(
        w,
        heads,
        tensors(HashMap::from([
            ("recurrent_param".to_string(), tensor(&param, &[w])),
            (
                "input_gate_weight".to_string(),
                tensor(&wx, &[heads, blk, blk]),
            ),
            ("input_gate_bias".to_string(), tensor(&bx, &[heads, blk])),
            (
                "recurrent_gate_weight".to_string(),
                tensor(&wa, &[heads, blk, blk]),
            ),
            (
                "recurrent_gate_bias".to_string(),
                tensor(&ba, &[heads, blk]),
            ),
        ])),
    )
    .unwrap();
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let softplus = |v: f32| (1.0 + v.exp()).ln();
    // Position 0 at t = 0 for sequence 0 (state reset); sequence 1 continues from h0 at 5.
    let starts = [0i64, 5];
    let mut want = vec![0.0f32; b * t * w];
    let mut state = h0.clone();
    for bi in 0..b {
        for ti in 0..t {
            let xr = &x[(bi * t + ti) * w..][..w];
            for hd in 0..heads {
                for j in 0..blk {
                    let (mut gi, mut ga) = (bx[hd * blk + j], ba[hd * blk + j]);
                    for i in 0..blk {
                        gi += xr[hd * blk + i] * wx[(hd * blk + i) * blk + j];
                        ga += xr[hd * blk + i] * wa[(hd * blk + i) * blk + j];
                    }
                    let ch = hd * blk + j;
                    let log_a = -8.0 * sigmoid(ga) * softplus(param[ch]);
                    let reset = starts[bi] + ti as i64 == 0;
                    let a = if reset { 0.0 } else { log_a.exp() };
                    let mult = if reset {
                        1.0
                    } else {
                        (1.0 - (2.0 * log_a).exp()).sqrt()
                    };
                    let h = &mut state[bi * w + ch];
                    *h = a * *h + mult * sigmoid(gi) * xr[ch];
                    let k = (bi * t + ti) * w + ch;
                    want[k] = *h * gelu(branch[k]);
                }
            }
        }
    }
    let pos: Vec<i64> = starts
        .iter()
        .flat_map(|&s| (0..t as i64).map(move |i| s + i))
        .collect();
    let st = Step::new(b, t, pos, &Device::Cpu).unwrap();
    let input = |v: &[f32], shape: &[usize]| tensor(v, shape).to_dtype(dtype).unwrap();
    let (y, last) = lru
        .forward(
            &input(&x, &[b, t, w]),
            &input(&branch, &[b, t, w]),
            &tensor(&h0, &[b, w]),
            &st,
        )
        .unwrap();
    let y = flat(&y.to_dtype(DType::F32).unwrap());
    for (what, got, want) in [
        ("rg_lru y", &y, &want),
        ("rg_lru state", &flat(&last), &state),
    ] {
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (g - w).abs() <= abs + rel * w.abs(),
                "{dtype:?} {what}[{i}]: {g} vs {w}"
            );
        }
    }
}

/// The attention layer's weights, row-major as nn.Linear stores them.
struct AttnWeights {
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    bo: Vec<f32>,
}

/// Multi-query attention over keys i - window < j <= i, computed directly.
fn attention_reference(cfg: &Config, w: &AttnWeights, x: &[f32], t: usize) -> Vec<f32> {
    let AttnWeights { wq, wk, wv, wo, bo } = w;
    let (d, h, hd, rot) = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.head_dim,
        cfg.rotary_dim(),
    );
    let proj = |w: &[f32], out: usize, row: &[f32]| -> Vec<f32> {
        (0..out)
            .map(|o| (0..row.len()).map(|i| w[o * row.len() + i] * row[i]).sum())
            .collect()
    };
    let rope = |v: &mut [f32], pos: usize| {
        for i in 0..rot / 2 {
            let f = 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / rot as f64);
            let (s, c) = ((pos as f64 * f) as f32).sin_cos();
            let (a, b) = (v[i], v[i + rot / 2]);
            v[i] = a * c - b * s;
            v[i + rot / 2] = b * c + a * s;
        }
    };
    let mut qs = Vec::new();
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    for ti in 0..t {
        let row = &x[ti * d..(ti + 1) * d];
        let mut q = proj(wq, h * hd, row);
        for head in 0..h {
            rope(&mut q[head * hd..(head + 1) * hd], ti);
        }
        let mut k = proj(wk, hd, row);
        rope(&mut k, ti);
        qs.push(q);
        ks.push(k);
        vs.push(proj(wv, hd, row));
    }
    let mut out = Vec::new();
    for (ti, qt) in qs.iter().enumerate() {
        let first = (ti + 1).saturating_sub(cfg.attention_window_size);
        let mut o = vec![0.0f32; h * hd];
        for head in 0..h {
            let q = &qt[head * hd..(head + 1) * hd];
            let scores: Vec<f32> = (first..=ti)
                .map(|j| q.iter().zip(&ks[j]).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt())
                .collect();
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f32 = e.iter().sum();
            for (n, j) in (first..=ti).enumerate() {
                for c in 0..hd {
                    o[head * hd + c] += e[n] / z * vs[j][c];
                }
            }
        }
        out.extend(proj(wo, d, &o).iter().zip(bo).map(|(a, b)| a + b));
    }
    out
}

#[test]
fn local_attention_matches_the_window_loop_below_at_and_past_the_window() {
    // f32: positional attention on the CPU; bf16: the masked-matmul tensor path (bf16 rounding).
    local_attention_case(DType::F32, 1e-5, 1e-4);
    local_attention_case(DType::BF16, 5e-2, 5e-2);
}

fn local_attention_case(dtype: DType, abs: f32, rel: f32) {
    let close = |got: &[f32], want: &[f32], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= abs + rel * w.abs(),
                "{dtype:?} {what}[{i}]: {g} vs {w}"
            );
        }
    };
    let tensor = |v: &[f32], shape: &[usize]| tensor(v, shape).to_dtype(dtype).unwrap();
    let flat = |t: &Tensor| flat(&t.to_dtype(DType::F32).unwrap());
    let vb = |m: HashMap<String, Tensor>| VarBuilder::from_tensors(m, dtype, &Device::Cpu);
    let cfg = Config::from_json(
        r#"{"model_type":"recurrent_gemma","vocab_size":10,"hidden_size":12,"intermediate_size":24,
            "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":1,"head_dim":4,
            "attention_window_size":8,"block_types":["attention"],"rope_theta":10000.0,"partial_rotary_factor":0.5}"#,
    )
    .unwrap();
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let mut rng = Rng(3);
    let w = AttnWeights {
        wq: rng.vec(d * d, 0.5),
        wk: rng.vec(hd * d, 0.5),
        wv: rng.vec(hd * d, 0.5),
        wo: rng.vec(d * d, 0.5),
        bo: rng.vec(d, 0.5),
    };
    let attn = LocalAttention::new(
        &cfg,
        vb(HashMap::from([
            ("q_proj.weight".to_string(), tensor(&w.wq, &[d, d])),
            ("k_proj.weight".to_string(), tensor(&w.wk, &[hd, d])),
            ("v_proj.weight".to_string(), tensor(&w.wv, &[hd, d])),
            ("o_proj.weight".to_string(), tensor(&w.wo, &[d, d])),
            ("o_proj.bias".to_string(), tensor(&w.bo, &[d])),
        ])),
    )
    .unwrap();
    // 150: past the layer's query block (64), so the ring carries keys between blocks.
    for t in [3, 8, 13, 20, 150] {
        let x = rng.vec(t * d, 1.0);
        let want = attention_reference(&cfg, &w, &x, t);
        // All at once.
        let mut state = AttentionState::new(&cfg, 1, dtype, &Device::Cpu).unwrap();
        let got = attn
            .forward(&tensor(&x, &[1, t, d]), &mut state, &step(1, t, 0))
            .unwrap();
        close(&flat(&got), &want, &format!("attention T={t}"));
        // One token at a time through the ring.
        let mut state = AttentionState::new(&cfg, 1, dtype, &Device::Cpu).unwrap();
        let stepped: Vec<f32> = (0..t)
            .flat_map(|i| {
                flat(
                    &attn
                        .forward(
                            &tensor(&x[i * d..(i + 1) * d], &[1, 1, d]),
                            &mut state,
                            &step(1, 1, i as i64),
                        )
                        .unwrap(),
                )
            })
            .collect();
        close(
            &stepped,
            &want,
            &format!("attention T={t}, one token at a time"),
        );
    }
}

#[test]
fn rms_norm_uses_one_plus_weight_hand_checked() {
    // x = [3, 4]: mean(x²) = 12.5, rsqrt(12.5 + eps) ≈ 0.2828427; scale = 1 + [0, 1] = [1, 2].
    let norm = griffin::rms_norm::RmsNorm::new(
        2,
        1e-6,
        vb(HashMap::from([(
            "weight".to_string(),
            tensor(&[0.0, 1.0], &[2]),
        )])),
    )
    .unwrap();
    let out = candle_core::Module::forward(&norm, &tensor(&[3.0, 4.0], &[1, 2])).unwrap();
    let r = 1.0 / (12.5f32 + 1e-6).sqrt();
    close(&flat(&out), &[3.0 * r, 2.0 * 4.0 * r], "rms_norm");
}

#[test]
fn mlp_is_gated_gelu_tanh_hand_checked() {
    // hidden 1, width 1: down(gelu_tanh(2x + 1) * (3x - 1)) + 0.5 at x = 0.7.
    let mlp = griffin::mlp::Mlp::new(
        1,
        1,
        vb(HashMap::from([
            ("gate_proj.weight".to_string(), tensor(&[2.0], &[1, 1])),
            ("gate_proj.bias".to_string(), tensor(&[1.0], &[1])),
            ("up_proj.weight".to_string(), tensor(&[3.0], &[1, 1])),
            ("up_proj.bias".to_string(), tensor(&[-1.0], &[1])),
            ("down_proj.weight".to_string(), tensor(&[1.5], &[1, 1])),
            ("down_proj.bias".to_string(), tensor(&[0.5], &[1])),
        ])),
    )
    .unwrap();
    let gelu_tanh = |v: f32| {
        0.5 * v * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
    };
    let x = 0.7f32;
    let want = 1.5 * gelu_tanh(2.0 * x + 1.0) * (3.0 * x - 1.0) + 0.5;
    let out = candle_core::Module::forward(&mlp, &tensor(&[x], &[1, 1])).unwrap();
    close(&flat(&out), &[want], "mlp");
}
