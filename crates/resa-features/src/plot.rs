//! Figures in the style of the paper's Figure 3, as SVG and PNG (plotters): reasoning
//! features per layer with the fitted mixture over them, and counts against scores.
//!
//! Text needs a TrueType font: the first of [`FONT_PATHS`] that exists (or `RESA_FONT`) is
//! used. Without one no figure can be labelled, and [`font_available`] says so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::gmm::Gmm;

/// Fonts tried, in order, after `$RESA_FONT`.
pub const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Registers a font for figure text once; returns the font file, or `None` when no font
/// was found (figures are then not drawn).
pub fn font_available() -> Option<&'static Path> {
    FONT.get_or_init(|| {
        let candidates = std::env::var("RESA_FONT").ok().into_iter().chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Some(PathBuf::from(path));
            }
        }
        None
    })
    .as_deref()
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot { path: path.to_path_buf(), message: e.to_string() }
}

/// Bars of `counts` per layer with the mixture density scaled to the same total (cut at 1.5×
/// the largest count), written as `stem.svg` and `stem.png`. Returns the files written.
pub fn counts_figure(
    layers: &[usize],
    counts: &[f64],
    gmm: Option<&Gmm>,
    title: &str,
    y_label: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw_counts(SVGBackend::new(&svg, (720, 400)).into_drawing_area(), layers, counts, gmm, title, y_label)
        .map_err(|e| plot_err(&svg, e))?;
    draw_counts(BitMapBackend::new(&png, (720, 400)).into_drawing_area(), layers, counts, gmm, title, y_label)
        .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

fn draw_counts<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    layers: &[usize],
    counts: &[f64],
    gmm: Option<&Gmm>,
    title: &str,
    y_label: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let lo = layers.iter().copied().min().unwrap_or(0) as f64 - 0.5;
    let hi = layers.iter().copied().max().unwrap_or(0) as f64 + 0.5;
    let total: f64 = counts.iter().sum();
    let density = |x: f64| gmm.map_or(0.0, |g| g.pdf(x) * total);
    let curve: Vec<(f64, f64)> =
        (0..=400).map(|i| lo + (hi - lo) * f64::from(i) / 400.0).map(|x| (x, density(x))).collect();
    // The axis follows the counts: a narrow component's density can be a hundred times the
    // largest count, and would flatten the bars; the curve is cut at the top (and says so).
    let top = counts.iter().copied().fold(1.0, f64::max) * 1.5;
    let clipped = curve.iter().any(|p| p.1 > top);
    let curve: Vec<(f64, f64)> = curve.into_iter().map(|(x, y)| (x, y.min(top))).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(lo..hi, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("layer (hookpoint index)")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .disable_x_mesh()
        .draw()?;
    chart.draw_series(layers.iter().zip(counts).map(|(&l, &c)| {
        Rectangle::new([(l as f64 - 0.35, 0.0), (l as f64 + 0.35, c)], RGBColor(90, 130, 200).filled())
    }))?;
    if let Some(g) = gmm {
        chart
            .draw_series(LineSeries::new(curve, RGBColor(200, 60, 40).stroke_width(2)))?
            .label(if clipped { "mixture (cut at the top)" } else { "mixture" })
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(200, 60, 40).stroke_width(2)));
        for c in &g.components {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(c.mean, 0.0), (c.mean, top * 0.95)],
                RGBColor(200, 60, 40).mix(0.5).stroke_width(1),
            )))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    }
    root.present()?;
    Ok(())
}

/// Scatter of per-layer counts against per-layer scores, each point labelled with its
/// layer, written as `stem.svg` and `stem.png`.
pub fn counts_vs_scores_figure(layers: &[usize], counts: &[f64], scores: &[f64], stem: &Path) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw_scatter(SVGBackend::new(&svg, (560, 440)).into_drawing_area(), layers, counts, scores)
        .map_err(|e| plot_err(&svg, e))?;
    draw_scatter(BitMapBackend::new(&png, (560, 440)).into_drawing_area(), layers, counts, scores)
        .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

fn draw_scatter<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    layers: &[usize],
    counts: &[f64],
    scores: &[f64],
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let cx = counts.iter().copied().fold(1.0, f64::max) * 1.1;
    let (smin, smax) = scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
    let pad = ((smax - smin) * 0.1).max(0.5);
    let r = pearson(counts, scores);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("reasoning features vs score (Pearson r = {r:.2})"), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..cx, (smin - pad)..(smax + pad))?;
    chart.configure_mesh().x_desc("reasoning features").y_desc("score").draw()?;
    chart.draw_series(layers.iter().zip(counts.iter().zip(scores)).map(|(&l, (&c, &s))| {
        EmptyElement::at((c, s))
            + Circle::new((0, 0), 4, RGBColor(90, 130, 200).filled())
            + Text::new(format!("{l}"), (6, -6), ("sans-serif", 11))
    }))?;
    root.present()?;
    Ok(())
}

/// Average Pass@1 against Stage II checkpoint step, with the paper's reported point, written
/// as `stem.svg` and `stem.png`. Returns the files written.
pub fn checkpoints_figure(
    curve: &[(u64, f64)],
    paper: Option<(u64, f64)>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    steps_figure(curve, paper, &format!("{title}: average Pass@1 by checkpoint"), "Stage II step", stem)
}

/// Pass@1 against a step (`x_desc` names it), with an optional reported point, written as
/// `stem.svg` and `stem.png`. Returns the files written.
pub fn steps_figure(
    curve: &[(u64, f64)],
    paper: Option<(u64, f64)>,
    title: &str,
    x_desc: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw_checkpoints(SVGBackend::new(&svg, (640, 400)).into_drawing_area(), curve, paper, title, x_desc)
        .map_err(|e| plot_err(&svg, e))?;
    draw_checkpoints(BitMapBackend::new(&png, (640, 400)).into_drawing_area(), curve, paper, title, x_desc)
        .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

fn draw_checkpoints<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    curve: &[(u64, f64)],
    paper: Option<(u64, f64)>,
    title: &str,
    x_desc: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let points: Vec<(f64, f64)> =
        curve.iter().map(|&(s, a)| (s as f64, a)).chain(paper.map(|(s, a)| (s as f64, a))).collect();
    let (xmin, xmax) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (xpad, ypad) = (((xmax - xmin) * 0.08).max(1.0), ((ymax - ymin) * 0.15).max(1.0));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d((xmin - xpad)..(xmax + xpad), (ymin - ypad)..(ymax + ypad))?;
    chart.configure_mesh().x_desc(x_desc).y_desc("Pass@1 (%)").x_label_formatter(&|x| format!("{x:.0}")).draw()?;
    let measured: Vec<(f64, f64)> = curve.iter().map(|&(s, a)| (s as f64, a)).collect();
    chart
        .draw_series(LineSeries::new(measured.clone(), RGBColor(90, 130, 200).stroke_width(2)))?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(90, 130, 200).stroke_width(2)));
    chart.draw_series(measured.iter().map(|&p| Circle::new(p, 3, RGBColor(90, 130, 200).filled())))?;
    if let Some((s, a)) = paper {
        chart
            .draw_series(std::iter::once(Cross::new((s as f64, a), 6, RGBColor(200, 60, 40).stroke_width(2))))?
            .label("paper")
            .legend(|(x, y)| Cross::new((x + 9, y), 5, RGBColor(200, 60, 40).stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

/// Bars of `values` (percent) with ± `errors` whiskers, one per label, written as
/// `stem.svg` and `stem.png`. Returns the files written.
pub fn bars_figure(
    labels: &[String],
    values: &[f64],
    errors: &[f64],
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let (w, h) = (160 + 110 * labels.len() as u32, 400);
    draw_bars(SVGBackend::new(&svg, (w, h)).into_drawing_area(), labels, values, errors, title)
        .map_err(|e| plot_err(&svg, e))?;
    draw_bars(BitMapBackend::new(&png, (w, h)).into_drawing_area(), labels, values, errors, title)
        .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    labels: &[String],
    values: &[f64],
    errors: &[f64],
    title: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..100.0)?;
    chart
        .configure_mesh()
        .y_desc("Pass@1 (%)")
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11))
        .draw()?;
    chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
        Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, v)], RGBColor(90, 130, 200).filled())
    }))?;
    chart.draw_series(values.iter().zip(errors).enumerate().map(|(i, (&v, &e))| {
        PathElement::new(vec![(i as f64, (v - e).max(0.0)), (i as f64, (v + e).min(100.0))], BLACK.stroke_width(2))
    }))?;
    root.present()?;
    Ok(())
}

/// Pearson correlation (0 when either side is constant).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va <= 0.0 || vb <= 0.0 { 0.0 } else { cov / (va * vb).sqrt() }
}

/// One panel of a curves figure: a metric, and one line per series (a hookpoint, or one
/// line named by the metric).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The metric (the panel's title and y axis).
    pub name: String,
    /// (series name, points (x, y)).
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Training curves: one panel per metric in a grid of up to three columns, step on the x
/// axis, written as `stem.svg` and `stem.png`. Returns the files written.
pub fn curves_figure(panels: &[Panel], title: &str, stem: &Path) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (360 * cols as u32, 40 + 260 * rows as u32);
    draw_curves(SVGBackend::new(&svg, size).into_drawing_area(), panels, title, cols, rows)
        .map_err(|e| plot_err(&svg, e))?;
    draw_curves(BitMapBackend::new(&png, size).into_drawing_area(), panels, title, cols, rows)
        .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

/// Colours of a panel's series, in order.
const SERIES_COLOURS: [RGBColor; 6] = [
    RGBColor(90, 130, 200),
    RGBColor(200, 90, 60),
    RGBColor(80, 160, 90),
    RGBColor(150, 90, 180),
    RGBColor(200, 160, 40),
    RGBColor(60, 170, 180),
];

/// Decimals that tell apart the ticks of an axis spanning `span` (about ten ticks).
fn tick_decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    (-(span / 10.0).log10()).ceil().clamp(0.0, 12.0) as usize
}

fn draw_curves<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[Panel],
    title: &str,
    cols: usize,
    rows: usize,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas) {
        let points = panel.series.iter().flat_map(|(_, p)| p.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
        let (xmin, xmax, ymin, ymax) = points
            .fold((f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY), |(a, b, c, d), p| {
                (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1))
            });
        if !xmin.is_finite() || !ymin.is_finite() {
            continue;
        }
        let xpad = ((xmax - xmin) * 0.03).max(0.5);
        // A flat series (a constant learning rate) gets a range of ±10 % around its value.
        let span = ymax - ymin;
        let ypad = if span > ymax.abs().max(ymin.abs()) * 1e-9 {
            span * 0.08
        } else if ymax != 0.0 {
            ymax.abs() * 0.1
        } else {
            1.0
        };
        let decimals = tick_decimals(span + 2.0 * ypad);
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.name, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d((xmin - xpad)..(xmax + xpad), (ymin - ypad)..(ymax + ypad))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .draw()?;
        for (i, (name, pts)) in panel.series.iter().enumerate() {
            let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
            let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let line = chart.draw_series(LineSeries::new(pts, colour.stroke_width(2)))?;
            if panel.series.len() > 1 {
                line.label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
            }
        }
        if panel.series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 10))
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tick_decimals;

    /// Ten ticks over the span print as ten different labels, with no more digits than that takes.
    #[test]
    fn tick_labels_tell_the_ticks_apart() {
        for (lo, span, decimals) in [(0.0, 2.4, 1), (0.0009, 0.0002, 5), (4700.0, 5000.0, 0), (1e6, 3.0, 1)] {
            assert_eq!(tick_decimals(span), decimals, "span {span}");
            let labels: Vec<String> = (0..10).map(|i| format!("{:.*}", decimals, lo + span * i as f64 / 9.0)).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(unique.len(), labels.len(), "{labels:?}");
        }
        assert_eq!(tick_decimals(0.0), 2);
        assert_eq!(tick_decimals(f64::NAN), 2);
    }
}
