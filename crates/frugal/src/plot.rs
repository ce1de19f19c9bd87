//! The SVG of `frugal compare`: one panel per measured quantity against context length, a line
//! per architecture (log scales).
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::combinators::BindKeyPoints;
use plotters::element::DashedPathElement;
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

/// `n` tokens as a person writes them: 256, 1K, 2K, 64K, 1.5K.
pub fn tokens(n: f64) -> String {
    if n >= 1024.0 {
        let k = n / 1024.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{}K", k.round())
        } else {
            format!("{k:.1}K")
        }
    } else {
        format!("{n:.0}")
    }
}

/// A quantity with an SI suffix and `unit`: 950 B, 1.2 MB, 3 GB, 12K tok/s.
pub fn si(v: f64, unit: &str) -> String {
    let (scaled, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
        .iter()
        .find(|(f, _)| v >= *f)
        .map_or((v, ""), |&(f, p)| (v / f, p));
    let digits = if scaled >= 100.0 || scaled == scaled.round() {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    // Bytes read "1.2 MB"; rates read "12K tok/s".
    if unit == "B" {
        format!("{scaled:.digits$} {prefix}B")
    } else {
        format!("{scaled:.digits$}{prefix} {unit}")
    }
}

/// The baseline's name: drawn black, thick and dashed, so every other line reads against it.
const BASELINE: &str = "transformer";

/// Writes the plot: a 2×2 grid of panels (prefill and decode rates, cache and weight bytes, each
/// against context length on log scales, ticks at the measured contexts) and one legend beside
/// the grid, outside every panel's data.
pub fn write_svg(path: &Path, records: &[Record], title: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (grid, legend) = root.split_horizontally(1180);
    let mut archs: Vec<&str> = Vec::new();
    for r in records {
        if !archs.contains(&r.arch.as_str()) {
            archs.push(&r.arch);
        }
    }
    let style = |i: usize, arch: &str| -> (RGBAColor, u32) {
        if arch == BASELINE {
            (BLACK.to_rgba(), 3)
        } else {
            (Palette99::pick(i).to_rgba(), 2)
        }
    };
    let mut contexts: Vec<f64> = records.iter().map(|r| r.context as f64).collect();
    contexts.sort_by(f64::total_cmp);
    contexts.dedup();
    let (x_lo, x_hi) = bounds(&contexts);
    for (area, (name, unit, value)) in grid.split_evenly((2, 2)).iter().zip(METRICS) {
        let ys: Vec<f64> = records
            .iter()
            .filter_map(value)
            .filter(|v| *v > 0.0)
            .collect();
        if ys.is_empty() {
            continue;
        }
        let (y_lo, y_hi) = bounds(&ys);
        let y_unit = if unit == "bytes" { "B" } else { "tok/s" };
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(84)
            .build_cartesian_2d(
                (x_lo..x_hi).log_scale().with_key_points(contexts.clone()),
                (y_lo..y_hi)
                    .log_scale()
                    .with_key_points(ticks_125(y_lo, y_hi)),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("context (tokens)")
            .y_desc(unit)
            .x_label_formatter(&|x| tokens(*x))
            .y_label_formatter(&|y| si(*y, y_unit))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, arch) in archs.iter().enumerate() {
            let points: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.arch == *arch)
                .filter_map(|r| value(r).map(|v| (r.context as f64, v)))
                .filter(|(_, v)| *v > 0.0)
                .collect();
            if points.is_empty() {
                continue;
            }
            let (color, width) = style(i, arch);
            if *arch == BASELINE {
                chart
                    .draw_series(DashedLineSeries::new(
                        points.clone(),
                        10,
                        6,
                        color.stroke_width(width),
                    ))
                    .map_err(|e| err(&e))?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
                    .map_err(|e| err(&e))?;
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    // The legend: one line per architecture, beside the panels.
    let legend = legend.margin(90, 10, 10, 10);
    legend
        .draw(&Text::new("architecture", (0, 0), ("sans-serif", 17)))
        .map_err(|e| err(&e))?;
    for (i, arch) in archs.iter().enumerate() {
        let (color, width) = style(i, arch);
        let y = 30 + 26 * i as i32;
        let line = vec![(0, y + 8), (30, y + 8)];
        if *arch == BASELINE {
            legend
                .draw(&DashedPathElement::new(
                    line,
                    10,
                    6,
                    color.stroke_width(width),
                ))
                .map_err(|e| err(&e))?;
        } else {
            legend
                .draw(&PathElement::new(line, color.stroke_width(width)))
                .map_err(|e| err(&e))?;
        }
        legend
            .draw(&Circle::new((15, y + 8), 3, color.filled()))
            .map_err(|e| err(&e))?;
        let label = if *arch == BASELINE {
            format!("{arch} (baseline)")
        } else {
            arch.to_string()
        };
        legend
            .draw(&Text::new(label, (38, y), ("sans-serif", 15)))
            .map_err(|e| err(&e))?;
    }
    let notes = [
        "Encoders (fastformer,",
        "smartbird) have no decode",
        "and keep no cache.",
    ];
    for (k, note) in notes.iter().enumerate() {
        let y = 50 + 26 * archs.len() as i32 + 18 * k as i32;
        legend
            .draw(&Text::new(*note, (0, y), ("sans-serif", 13)))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Ticks at 1, 2 and 5 times each power of ten in `[lo, hi]`: enough labels on a log axis that
/// spans less than a few decades.
fn ticks_125(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let t = m * decade;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
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

#[cfg(test)]
mod tests {
    use super::{si, ticks_125, tokens};

    #[test]
    fn axis_labels_read_as_people_write_them() {
        assert_eq!(tokens(256.0), "256");
        assert_eq!(tokens(1024.0), "1K");
        assert_eq!(tokens(2048.0), "2K");
        assert_eq!(tokens(65536.0), "64K");
        assert_eq!(tokens(1536.0), "1.5K");
        assert_eq!(si(950.0, "B"), "950 B");
        assert_eq!(si(1_000_000.0, "B"), "1 MB");
        assert_eq!(si(1_234_567.0, "B"), "1.23 MB");
        assert_eq!(si(21_000_000.0, "B"), "21 MB");
        assert_eq!(si(12_345.0, "tok/s"), "12.3K tok/s");
        assert_eq!(si(512.0, "tok/s"), "512 tok/s");
        assert_eq!(ticks_125(300.0, 2500.0), vec![500.0, 1000.0, 2000.0]);
        assert_eq!(ticks_125(9.0, 11.0), vec![10.0]);
    }
}
