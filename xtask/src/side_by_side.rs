//! What both `vs-llamacpp` tables share: running each side and printing their ratios.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// `frugal compare ARGS --json` (the release build under `root`) on `threads` rayon threads; its
/// JSON is saved to `save` and returned.
pub fn frugal_compare(root: &Path, args: &[&str], threads: usize, save: &Path) -> Result<Value> {
    let out = Command::new(root.join("target/release/frugal"))
        .arg("compare")
        .args(args)
        .arg("--json")
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .context("running frugal compare")?;
    ensure!(
        out.status.success(),
        "frugal compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(save, &out.stdout).with_context(|| format!("writing {}", save.display()))?;
    serde_json::from_slice(&out.stdout).context("frugal compare's JSON")
}

/// `llama-bench -m MODELS ARGS -t threads -r reps -o json`; its JSON is saved to `save` and its
/// rows returned.
pub fn llama_bench(
    exe: &Path,
    models: &[&Path],
    args: &[&str],
    (threads, reps): (usize, usize),
    save: &Path,
) -> Result<Vec<Value>> {
    let models = models
        .iter()
        .map(|m| m.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(exe)
        .args(["-m", &models])
        .args(args)
        .args(["-t", &threads.to_string(), "-r", &reps.to_string()])
        .args(["-o", "json"])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    ensure!(
        out.status.success(),
        "llama-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(save, &out.stdout).with_context(|| format!("writing {}", save.display()))?;
    match serde_json::from_slice(&out.stdout).context("llama-bench's JSON")? {
        Value::Array(rows) => Ok(rows),
        _ => bail!("llama-bench's JSON is not an array"),
    }
}

/// A rate with `decimals` digits, or "-" when a side has none.
pub fn rate(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

/// `rounds` rounds of both sides, their order alternating (frugal first in even rounds), so that
/// this machine's drift (its speed moves by a fifth or more over minutes) falls on each side
/// alike: per round, (frugal's results, llama.cpp's).
pub fn alternating<F, L>(
    rounds: usize,
    what: &str,
    mut frugal: impl FnMut() -> Result<F>,
    mut llama: impl FnMut() -> Result<L>,
) -> Result<Vec<(F, L)>> {
    (0..rounds)
        .map(|r| {
            if rounds > 1 {
                eprintln!("{what}: round {} of {rounds}", r + 1);
            }
            if r % 2 == 0 {
                let ours = frugal()?;
                Ok((ours, llama()?))
            } else {
                let theirs = llama()?;
                Ok((frugal()?, theirs))
            }
        })
        .collect()
}

/// The median of the ratios `a / b` of the pairs where both are present, as "1.23x", or "-".
pub fn median_ratio(pairs: impl Iterator<Item = (Option<f64>, Option<f64>)>) -> String {
    median(pairs.map(|pair| match pair {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }))
    .map_or("-".to_string(), |q| format!("{q:.2}x"))
}

/// The median of the values present (the mean of the middle two for an even count), or `None`.
pub fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// How each side-by-side is sampled: threads on both sides, llama-bench's repetitions, rounds.
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    pub threads: usize,
    pub reps: usize,
    pub rounds: usize,
}

#[cfg(test)]
mod tests {
    use super::{median, median_ratio};

    #[test]
    fn medians_skip_missing_values_and_average_the_middle_pair() {
        assert_eq!(
            median([Some(3.0), None, Some(1.0), Some(2.0)].into_iter()),
            Some(2.0)
        );
        assert_eq!(
            median([Some(4.0), Some(1.0), Some(2.0), Some(3.0)].into_iter()),
            Some(2.5)
        );
        assert_eq!(median([None, None].into_iter()), None);
    }

    /// The median of each round's own ratio, not the ratio of the medians: rounds (12, 10),
    /// (30, 10), (20, 5) give ratios 1.2, 3, 4 (median 3), where the medians' ratio is 20 / 10.
    #[test]
    fn ratios_are_the_median_of_each_rounds_ratio() {
        let rounds = [(10.0, 5.0), (30.0, 10.0), (20.0, 20.0)];
        let pairs = rounds.iter().map(|&(a, b)| (Some(a), Some(b)));
        assert_eq!(median_ratio(pairs), "2.00x");
        let rounds = [(12.0, 10.0), (30.0, 10.0), (20.0, 5.0)];
        let pairs = rounds.iter().map(|&(a, b)| (Some(a), Some(b)));
        assert_eq!(median_ratio(pairs), "3.00x");
        assert_eq!(
            median_ratio([(Some(1.0), None), (None, Some(2.0))].into_iter()),
            "-"
        );
        assert_eq!(median_ratio([(Some(1.0), Some(0.0))].into_iter()), "-");
    }
}
