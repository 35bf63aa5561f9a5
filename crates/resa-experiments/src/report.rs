//! A run's results beside the paper's numbers: `result.md`, `result.json`, the checkpoint selections.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use resa_eval::{Report, bench_columns, compare_markdown};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::experiment::{Experiment, PAPER_TASKS};

/// One measured row of the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRow {
    /// The experiment (or hookpoint of a sweep).
    pub label: String,
    /// The Stage II checkpoint evaluated; absent for the final adapter (or no adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The evaluation's report.
    pub report: Report,
}

/// `result.md` (measured beside the paper) and `result.json`; for a sweep also
/// `scores.json` (`{"layers.N": average}`, the input of `resa features --scores`).
pub(crate) fn write_results(
    exp: &Experiment,
    rows: &[ResultRow],
    feature_counts: &BTreeMap<String, usize>,
    dir: &Path,
    tiny: bool,
) -> Result<()> {
    let mut md = format!("# {} — {}\n\n{} ({}).\n", exp.name, exp.title, exp.table, exp.provenance);
    if tiny {
        md.push_str("\n**--tiny run on the toy model: these numbers are not comparable with the paper's.**\n");
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|r| match r.step {
            Some(step) => format!("{} @ step {step} (measured)", r.label),
            None => format!("{} (measured)", r.label),
        })
        .collect();
    let table: Vec<(&str, &Report)> = labels.iter().map(String::as_str).zip(rows.iter().map(|r| &r.report)).collect();
    md.push('\n');
    md.push_str(&compare_markdown(&table));
    let benches = bench_columns(rows.iter().map(|r| &r.report));
    if !exp.paper.is_empty() {
        let _ = write!(md, "| {} (paper) |", exp.name);
        for b in &benches {
            let _ = write!(md, " {} |", exp.paper.get(*b).map_or(String::new(), |v| format!("{v:.2}")));
        }
        let _ = writeln!(md, " {} |", exp.paper.get("average").map_or(String::new(), |v| format!("{v:.2}")));
    }
    let missing: Vec<&str> = PAPER_TASKS.iter().copied().filter(|t| !benches.contains(t)).collect();
    if !tiny && !missing.is_empty() {
        let _ = writeln!(md, "\nNot run: {} (the average is over the benchmarks run).", missing.join(", "));
    }
    let layer_scores = layer_scores(exp, rows);
    sweep_markdown(&mut md, exp, &layer_scores, feature_counts);
    let selections = checkpoint_selections(exp, rows);
    checkpoints_markdown(&mut md, exp, &selections, dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    md.push_str(&resa_pipeline::curves::curves_section(dir));
    resa_publish::write_atomic(dir.join("result.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "experiment": exp.name,
        "paper": exp.paper,
        "paper_step": exp.paper_step,
        "tiny": tiny,
        "rows": rows,
        "feature_counts": feature_counts,
        "paper_feature_counts": exp.paper_feature_counts,
        "checkpoints": selections.iter().map(|s| serde_json::json!({
            "label": s.label,
            "final_avg": s.final_avg,
            "best": s.best.map(|(step, avg)| serde_json::json!({"step": step, "avg": avg})),
            "at_paper_step": s.at_paper_step.map(|(step, avg)| serde_json::json!({"step": step, "avg": avg})),
        })).collect::<Vec<_>>(),
    });
    resa_publish::write_atomic(
        dir.join("result.json"),
        serde_json::to_string_pretty(&json).map_err(|e| Error::json("result.json", e))?.as_bytes(),
    )?;
    if exp.sweep.is_some() {
        resa_publish::write_atomic(
            dir.join("scores.json"),
            serde_json::to_string_pretty(&layer_scores).map_err(|e| Error::json("scores.json", e))?.as_bytes(),
        )?;
    }
    Ok(())
}

/// Per hookpoint of a sweep, as the paper's Table 6: the best checkpoint's average when
/// checkpoints were evaluated, else the final adapter's (empty without a sweep).
fn layer_scores<'a>(exp: &Experiment, rows: &'a [ResultRow]) -> BTreeMap<&'a str, f64> {
    let mut layer_scores: BTreeMap<&str, f64> = BTreeMap::new();
    if exp.sweep.is_some() {
        for r in rows {
            let has_checkpoints = rows.iter().any(|x| x.label == r.label && x.step.is_some());
            if has_checkpoints == r.step.is_some() {
                let e = layer_scores.entry(r.label.as_str()).or_insert(f64::NEG_INFINITY);
                *e = e.max(r.report.average_pct);
            }
        }
    }
    layer_scores
}

/// The per-hookpoint table of a sweep beside the paper's (Table 6).
fn sweep_markdown(
    md: &mut String,
    exp: &Experiment,
    layer_scores: &BTreeMap<&str, f64>,
    feature_counts: &BTreeMap<String, usize>,
) {
    if exp.sweep.is_none() || exp.paper_layers.is_empty() {
        return;
    }
    md.push_str(
        "\n## Per hookpoint (the paper's Table 6)\n\nAverage Pass@1 and reasoning features (the source model's, in \
             each hookpoint's SAE).\n\n| hookpoint | measured | paper | features (measured) | features (paper) |\n\
             |---|---:|---:|---:|---:|\n",
    );
    let mut keys: Vec<&str> = layer_scores.keys().copied().chain(exp.paper_layers.keys().map(String::as_str)).collect();
    keys.sort_by_key(|k| k.trim_start_matches("layers.").parse::<usize>().unwrap_or(usize::MAX));
    keys.dedup();
    for k in keys {
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let count = |v: Option<usize>| v.map_or("–".to_string(), |v| v.to_string());
        let _ = writeln!(
            md,
            "| {k} | {} | {} | {} | {} |",
            cell(layer_scores.get(k).copied()),
            cell(exp.paper_layers.get(k).copied()),
            count(feature_counts.get(k).copied()),
            count(exp.paper_feature_counts.get(k).copied())
        );
    }
}

/// The checkpoints of each run: the final adapter, the best checkpoint (the paper's
/// selection) and the one at the paper's step, with a figure per run where a font is found.
#[cfg_attr(not(feature = "plot"), allow(unused_variables))]
fn checkpoints_markdown(md: &mut String, exp: &Experiment, selections: &[Selection], dir: &Path) {
    if selections.is_empty() {
        return;
    }
    md.push_str(
        "\n## Checkpoints\n\nThe paper evaluates a checkpoint every 500 steps and reports the best by average: \
         a selection on the test sets themselves, so its numbers are optimistic. Here, per run: the final \
         adapter, the best checkpoint by average (the paper's selection), and the checkpoint at the step \
         the paper reports (Appendix B).\n\n| run | final adapter | best checkpoint | at the paper's step | paper |\n|---|---:|---:|---:|---:|\n",
    );
    for sel in selections {
        let cell = |x: Option<(u64, f64)>| x.map_or("–".to_string(), |(s, a)| format!("{a:.2} (step {s})"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            sel.label,
            sel.final_avg.map_or("–".to_string(), |a| format!("{a:.2}")),
            cell(sel.best),
            cell(sel.at_paper_step),
            exp.paper.get("average").map_or("–".to_string(), |v| match exp.paper_step {
                Some(s) => format!("{v:.2} (step {s})"),
                None => format!("{v:.2}"),
            }),
        );
    }
    #[cfg(feature = "plot")]
    if resa_features::plot::font_available().is_some() {
        for sel in selections {
            let stem = dir.join(format!("checkpoints-{}", sel.label.replace(['/', ' '], "_")));
            let paper = exp.paper.get("average").copied().zip(exp.paper_step).map(|(a, s)| (s, a));
            match resa_features::plot::checkpoints_figure(&sel.curve, paper, &sel.label, &stem) {
                Ok(files) => {
                    if let Some(svg) = files.first() {
                        let name = svg.file_name().unwrap_or_default().to_string_lossy();
                        let _ = writeln!(md, "\n![{}]({name})", sel.label);
                    }
                }
                Err(e) => tracing::warn!("checkpoint figure not drawn: {e}"),
            }
        }
    }
}

/// Per run label: the final adapter's average, the best checkpoint and the one at the
/// paper's step, and the (step, average) curve.
struct Selection {
    label: String,
    final_avg: Option<f64>,
    best: Option<(u64, f64)>,
    at_paper_step: Option<(u64, f64)>,
    #[cfg_attr(not(feature = "plot"), allow(dead_code))]
    curve: Vec<(u64, f64)>,
}

fn checkpoint_selections(exp: &Experiment, rows: &[ResultRow]) -> Vec<Selection> {
    let mut labels: Vec<&str> = rows.iter().filter(|r| r.step.is_some()).map(|r| r.label.as_str()).collect();
    labels.dedup();
    labels
        .into_iter()
        .map(|label| {
            let curve: Vec<(u64, f64)> = rows
                .iter()
                .filter(|r| r.label == label)
                .filter_map(|r| Some((r.step?, r.report.average_pct)))
                .collect();
            let best = curve.iter().copied().fold(None, |b: Option<(u64, f64)>, x| match b {
                Some(b) if b.1 >= x.1 => Some(b),
                _ => Some(x),
            });
            Selection {
                label: label.to_string(),
                final_avg: rows.iter().find(|r| r.label == label && r.step.is_none()).map(|r| r.report.average_pct),
                best,
                at_paper_step: exp.paper_step.and_then(|p| curve.iter().copied().find(|(s, _)| *s == p)),
                curve,
            }
        })
        .collect()
}
