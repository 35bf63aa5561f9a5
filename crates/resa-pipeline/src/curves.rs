//! Training curves of a run folder: every `metrics.jsonl` under it (Stage I, Stage II, SFT,
//! LoRA-GRPO) drawn as `curves.svg` and `curves.png` beside it — one panel per numeric
//! metric against the step (Stage I one line per hookpoint). `resa plot RUN_DIR` runs it,
//! also on a run that is still going (a half-written last line is left out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Keys of a metrics line that are not curves.
const NOT_CURVES: [&str; 5] = ["step", "total", "epoch", "tokens", "hookpoint"];

/// The file each run writes its steps to.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One metric's curves: (series name, points (step, value)), series by hookpoint when the
/// lines name one.
pub type Curves = BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>>;

/// The curves of one `metrics.jsonl`: every numeric key but the step counters, per series.
pub fn read_curves(path: &Path) -> Result<Curves> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut curves = Curves::new();
    for line in text.lines() {
        // A line still being written (or damaged) is not a point.
        let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(step) = m.get("step").and_then(serde_json::Value::as_f64) else { continue };
        let series = m.get("hookpoint").and_then(|h| h.as_str()).unwrap_or("").to_string();
        for (key, v) in &m {
            if NOT_CURVES.contains(&key.as_str()) {
                continue;
            }
            if let Some(y) = v.as_f64().filter(|y| y.is_finite()) {
                curves.entry(key.clone()).or_default().entry(series.clone()).or_default().push((step, y));
            }
        }
    }
    Ok(curves)
}

/// Every `metrics.jsonl` under `dir` (temporary folders left out), sorted.
pub fn metrics_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        for entry in std::fs::read_dir(&here).map_err(|e| Error::io(&here, e))? {
            let entry = entry.map_err(|e| Error::io(&here, e))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if name == METRICS_FILE {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Draws the curves of one `metrics.jsonl` as `curves.svg` and `curves.png` beside it;
/// returns the files written (none when it holds no point yet).
#[cfg(feature = "plot")]
pub fn plot_metrics(path: &Path, title: &str) -> Result<Vec<PathBuf>> {
    use resa_features::plot::{Panel, curves_figure};
    let curves = read_curves(path)?;
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    let panels: Vec<Panel> = curves
        .into_iter()
        .map(|(name, series)| Panel {
            series: series.into_iter().map(|(s, p)| (if s.is_empty() { name.clone() } else { s }, p)).collect(),
            name,
        })
        .collect();
    let stem = path.with_file_name("curves");
    Ok(curves_figure(&panels, title, &stem)?)
}

/// Draws every run's curves under `dir` ([`plot_metrics`]); returns the SVG files written,
/// relative to `dir`. A figure that cannot be drawn is an error naming its file.
#[cfg(feature = "plot")]
pub fn plot_run(dir: &Path) -> Result<Vec<PathBuf>> {
    if resa_features::plot::font_available().is_none() {
        return Err(Error::NoFont { tried: resa_features::plot::FONT_PATHS.join(", ") });
    }
    let mut drawn = Vec::new();
    for path in metrics_files(dir)? {
        let rel = path.parent().and_then(|p| p.strip_prefix(dir).ok()).unwrap_or(Path::new(""));
        let title = if rel.as_os_str().is_empty() { "training curves".to_string() } else { rel.display().to_string() };
        for f in plot_metrics(&path, &title)? {
            if f.extension().is_some_and(|e| e == "svg") {
                drawn.push(f.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(f));
            }
        }
    }
    Ok(drawn)
}

/// The Markdown section that links `figures` (paths relative to the report's folder).
pub fn curves_markdown(figures: &[PathBuf]) -> String {
    if figures.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Training curves\n\n");
    for f in figures {
        let run = f.parent().map_or(String::new(), |p| p.display().to_string());
        md.push_str(&format!("- [{}]({})\n", if run.is_empty() { "this run" } else { &run }, f.display()));
    }
    md
}

/// Draws every run's curves under `dir` and returns the Markdown section linking them, for a
/// report in `dir`; a figure that cannot be drawn (no font, a full disk) is logged and
/// named in the section instead, and the report is written all the same.
pub fn curves_section(dir: &Path) -> String {
    #[cfg(feature = "plot")]
    {
        match plot_run(dir) {
            Ok(figures) => curves_markdown(&figures),
            Err(e) => {
                tracing::warn!("training curves not drawn: {e}");
                format!("\n## Training curves\n\nNot drawn: {e}\n")
            }
        }
    }
    #[cfg(not(feature = "plot"))]
    {
        let _ = dir;
        "\n(No training curves: built without the `plot` feature; `resa plot` draws them.)\n".to_string()
    }
}
