//! The SVG of `frugal compare`: one panel per measured quantity against context length, a line
//! per architecture (log scales).
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::compare::Record;

type Metric = (&'static str, &'static str, fn(&Record) -> Option<f64>);

const METRICS: [Metric; 4] = [
    ("prefill", "tokens/s", |r| Some(r.prefill_tokens_per_s)),
    ("decode", "tokens/s", |r| r.decode_tokens_per_s),
    ("cache / state per sequence", "bytes", |r| {
        r.cache_bytes.map(|b| b as f64)
    }),
    ("weights", "bytes", |r| Some(r.weight_bytes as f64)),
];

/// Checks, before any measuring, that `path` can be written: not a directory, in an existing
/// directory, with write permission. A file this creates to find out is removed again.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!("--plot {}: is a directory", path.display());
    }
    let existed = path.exists();
    if existed {
        layers::files::regular_file(path).map_err(|e| anyhow!("--plot: {e}"))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| anyhow!("--plot {}: cannot be written: {e}", path.display()))?;
    if !existed {
        std::fs::remove_file(path).map_err(|e| anyhow!("--plot {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn write_svg(path: &Path, records: &[Record], title: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let root = SVGBackend::new(path, (1280, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let mut archs: Vec<&str> = Vec::new();
    for r in records {
        if !archs.contains(&r.arch.as_str()) {
            archs.push(&r.arch);
        }
    }
    let xs: Vec<f64> = records.iter().map(|r| r.context as f64).collect();
    let (x_lo, x_hi) = bounds(&xs);
    for (area, (name, unit, value)) in root.split_evenly((2, 2)).iter().zip(METRICS) {
        let ys: Vec<f64> = records
            .iter()
            .filter_map(value)
            .filter(|v| *v > 0.0)
            .collect();
        if ys.is_empty() {
            continue;
        }
        let (y_lo, y_hi) = bounds(&ys);
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("context (tokens)")
            .y_desc(unit)
            .draw()
            .map_err(|e| err(&e))?;
        for (i, arch) in archs.iter().enumerate() {
            let points: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.arch == *arch)
                .filter_map(|r| value(r).map(|v| (r.context as f64, v)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*arch)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A log axis' range around `v`, with a little room (a single value gets a decade around it).
fn bounds(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo >= hi {
        (lo / 3.0, hi * 3.0)
    } else {
        (lo / 1.3, hi * 1.3)
    }
}
