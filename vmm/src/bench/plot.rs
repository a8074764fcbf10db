//! SVG histograms of the round-trip rows' per-iteration cycles.

use super::env::Environment;
use super::error::{BenchError, Result};
use super::parse::GuestRow;
use super::report::Report;
use super::stats::ns;
use super::{ROUND_TRIP_ROWS, ROWS};
use std::path::{Path, PathBuf};

/// One SVG histogram per round-trip row (1–3) with samples; the files written.
pub fn plot(dir: &Path, report: &Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| BenchError::CreateDir {
        path: dir.into(),
        source,
    })?;
    let mut files = Vec::new();
    for id in ROUND_TRIP_ROWS {
        let Some(row) = report.guest.row(id).filter(|r| !r.samples.is_empty()) else {
            continue;
        };
        let what = ROWS.iter().find(|r| r.0 == id).map_or("", |r| r.1);
        let path = dir.join(format!("row{id}-{}.svg", row.name));
        if let Err(source) = histogram(&path, row, what, &report.env) {
            return Err(BenchError::Plot { path, source });
        }
        files.push(path);
    }
    Ok(files)
}

fn histogram(
    path: &Path,
    row: &GuestRow,
    what: &str,
    env: &Environment,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    const BINS: usize = 40;
    let s = &row.stats;
    // The range shown: min to p99, so that a few outliers do not squash the
    // rest; everything above lands in the last bin.
    let mut sorted = row.samples.clone();
    sorted.sort_unstable();
    let p99 = sorted[(sorted.len() * 99).div_ceil(100).max(1) - 1];
    let lo = s.min as f64;
    let hi = (p99 as f64).max(lo + 1.0);
    let width = (hi - lo) / BINS as f64;
    let mut counts = [0u32; BINS];
    for &c in &row.samples {
        let b = (((c as f64 - lo) / width) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "row {}: {} — n={}, median {} cycles ({:.0} ns)",
        row.id,
        what,
        s.n,
        s.median,
        ns(s.median, env.guest_khz())
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi + width, 0u32..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "TSC cycles per iteration (last bin: >= p99; {})",
            env.kvm_flavor.name()
        ))
        .y_desc("iterations")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new([(x0, 0), (x0 + width, c)], BLUE.mix(0.6).filled())
    }))?;
    let m = s.median as f64;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(m, 0), (m, top)],
            RED.stroke_width(2),
        )))?
        .label("median")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
