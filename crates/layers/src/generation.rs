//! The decoding loop every decoder shares: prefill the prompt, then pick a token (greedy, or a
//! seeded draw with temperature, top-k and top-p), feed it back, and stop at an end-of-sequence
//! id or the token budget. Prompt and decode time are measured apart, as llama.cpp reports them.
use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

/// How the next token is picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0: greedy (arg-max).
    pub temperature: f64,
    /// Keep only the `k` most probable tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most probable tokens whose mass reaches `p`.
    pub top_p: Option<f64>,
    /// The draws are reproducible from it.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }

    /// Refuses settings outside their domain, naming them, before any work starts.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::Input(format!(
                "temperature {t}: must be a finite number ≥ 0 (0 is greedy)"
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::Input(
                "top-k 0 keeps no token: give at least 1, or none for no limit".into(),
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Input(format!("top-p {p}: must be in (0, 1]")));
            }
        }
        Ok(())
    }
}

/// splitmix64: the sampler's random numbers, reproducible from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next token from `logits`: arg-max at temperature 0, else a draw from the tempered
/// distribution restricted to the top-k and then to the smallest top-p mass.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut Rng) -> Result<u32> {
    if logits.is_empty() {
        return Err(Error::Input("the model returned no logits".into()));
    }
    if s.temperature <= 0.0 {
        return Ok(crate::tokens::argmax(logits) as u32);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = s.top_k {
        order.truncate(k.max(1));
    }
    let max = f64::from(logits[order[0]]);
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / s.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = s.top_p {
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p;
                mass >= top_p
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&i, &p) in order.iter().zip(&probs) {
        if u < p {
            return Ok(i as u32);
        }
        u -= p;
    }
    Ok(order[order.len() - 1] as u32)
}

/// A model decoding one sequence from its cache or state.
pub trait Decoder {
    /// Runs the prompt; the last position's logits `[vocab]`.
    fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor>;
    /// Feeds one token; its logits `[vocab]`.
    fn step(&mut self, token: u32) -> Result<Tensor>;
}

/// What a generation produced, with its prompt and decode times apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// Seconds of the prompt's prefill (to its first logits).
    pub prompt_secs: f64,
    /// Seconds of every decode step after it (sampling included).
    pub decode_secs: f64,
    /// Decode steps timed by `decode_secs`: one per token after the first (which comes from the
    /// prompt's logits), so the decode rate is `decode_steps / decode_secs`.
    pub decode_steps: usize,
    /// Whether an end-of-sequence id stopped it (else the budget did).
    pub stopped_at_eos: bool,
}

/// Generates up to `max_tokens` after `prompt`, stopping before any id in `eos`; `on_token` sees
/// the tokens so far after each new one (to stream text).
///
/// The whole loop runs on one thread of the kernels' pool (`crate::pool::on_pool`): each step's
/// threaded kernels then start from a pool thread, not by waking the pool from outside and
/// sleeping until it answers (two thread switches a token; about 5% of a decode step of the
/// dense baseline at hidden 256).
pub fn generate<E: From<Error> + Send>(
    decoder: &mut (dyn Decoder + Send),
    prompt: &[u32],
    max_tokens: usize,
    sampling: &Sampling,
    eos: &[u32],
    on_token: impl FnMut(&[u32]) -> std::result::Result<(), E> + Send,
) -> std::result::Result<Generated, E> {
    crate::pool::on_pool(|| generate_here(decoder, prompt, max_tokens, sampling, eos, on_token))
}

/// [`generate`] on the calling thread.
fn generate_here<E: From<Error>>(
    decoder: &mut (dyn Decoder + Send),
    prompt: &[u32],
    max_tokens: usize,
    sampling: &Sampling,
    eos: &[u32],
    mut on_token: impl FnMut(&[u32]) -> std::result::Result<(), E>,
) -> std::result::Result<Generated, E> {
    sampling.validate()?;
    let mut rng = Rng::new(sampling.seed);
    let start = Instant::now();
    let mut logits = decoder.prefill(prompt)?;
    let prompt_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tokens = Vec::new();
    let mut stopped_at_eos = false;
    let mut decode_steps = 0;
    while tokens.len() < max_tokens {
        let next = if sampling.temperature == 0.0 && !logits.device().is_cpu() {
            // Greedy on a GPU: the arg-max there, and only the token comes back.
            logits
                .flatten_all()
                .and_then(|l| l.argmax(0))
                .and_then(|i| i.to_scalar::<u32>())
                .map_err(Error::from)?
        } else {
            let values: Vec<f32> = logits
                .to_dtype(DType::F32)
                .and_then(|l| l.flatten_all())
                .and_then(|l| l.to_vec1())
                .map_err(Error::from)?;
            sample(&values, sampling, &mut rng)?
        };
        if eos.contains(&next) {
            stopped_at_eos = true;
            break;
        }
        tokens.push(next);
        on_token(&tokens)?;
        if tokens.len() < max_tokens {
            logits = decoder.step(next)?;
            decode_steps += 1;
        }
    }
    Ok(Generated {
        tokens,
        prompt_secs,
        decode_secs: start.elapsed().as_secs_f64(),
        decode_steps,
        stopped_at_eos,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    /// A decoder whose logits favour token `(last + 1) % 5`.
    struct Counter(u32);

    impl Counter {
        fn logits(&self) -> Result<Tensor> {
            let mut v = vec![0f32; 5];
            v[((self.0 + 1) % 5) as usize] = 10.0;
            Ok(Tensor::new(v, &Device::Cpu)?)
        }
    }

    impl Decoder for Counter {
        fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor> {
            self.0 = *prompt.last().unwrap();
            self.logits()
        }
        fn step(&mut self, token: u32) -> Result<Tensor> {
            self.0 = token;
            self.logits()
        }
    }

    #[test]
    fn greedy_follows_the_logits_and_stops_at_eos_or_the_budget() {
        let mut seen = Vec::new();
        let out = generate::<Error>(&mut Counter(0), &[1], 10, &Sampling::greedy(), &[0], |t| {
            seen.push(t.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(out.tokens, vec![2, 3, 4]);
        assert!(out.stopped_at_eos);
        assert_eq!(seen, vec![1, 2, 3]);
        let out = generate::<Error>(&mut Counter(0), &[1], 2, &Sampling::greedy(), &[], |_| {
            Ok(())
        })
        .unwrap();
        assert_eq!(out.tokens, vec![2, 3]);
        assert!(!out.stopped_at_eos);
    }

    /// Records whether each call ran on a thread of rayon's pool.
    struct WhereRun(Vec<bool>);

    impl Decoder for WhereRun {
        fn prefill(&mut self, _: &[u32]) -> Result<Tensor> {
            self.step(0)
        }
        fn step(&mut self, _: u32) -> Result<Tensor> {
            self.0.push(rayon::current_thread_index().is_some());
            Ok(Tensor::new(vec![0f32, 1.0], &Device::Cpu)?)
        }
    }

    #[test]
    fn the_whole_loop_runs_on_one_pool_thread() {
        assert!(rayon::current_thread_index().is_none());
        let mut d = WhereRun(Vec::new());
        let mut on_token = Vec::new();
        generate::<Error>(&mut d, &[1], 4, &Sampling::greedy(), &[], |_| {
            on_token.push(rayon::current_thread_index());
            Ok(())
        })
        .unwrap();
        assert_eq!(d.0, vec![true; 4], "prefill and three steps");
        assert_eq!(on_token.len(), 4);
        assert!(on_token.iter().all(|t| t.is_some() && *t == on_token[0]));
    }

    #[test]
    fn sampling_is_seeded_and_restricted_by_top_k_and_top_p() {
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let s = |seed, top_k, top_p| Sampling {
            temperature: 1.0,
            top_k,
            top_p,
            seed,
        };
        let draws = |s: Sampling| {
            let mut rng = Rng::new(s.seed);
            (0..200)
                .map(|_| sample(&logits, &s, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(s(1, None, None)), draws(s(1, None, None)));
        assert_ne!(draws(s(1, None, None)), draws(s(2, None, None)));
        assert!(draws(s(3, Some(2), None)).iter().all(|&t| t >= 2));
        // p(3) = e³/Σ ≈ 0.644 < 0.85 ≤ p(3) + p(2) ≈ 0.881: top-p 0.85 keeps {3, 2}; 0.5 keeps
        // {3}.
        assert!(draws(s(4, None, Some(0.85))).iter().all(|&t| t >= 2));
        assert!(draws(s(4, None, Some(0.85))).contains(&2));
        assert!(draws(s(5, None, Some(0.5))).iter().all(|&t| t == 3));
        for bad in [
            Sampling {
                temperature: f64::NAN,
                ..s(0, None, None)
            },
            Sampling {
                temperature: -1.0,
                ..s(0, None, None)
            },
            s(0, Some(0), None),
            s(0, None, Some(0.0)),
            s(0, None, Some(1.5)),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
