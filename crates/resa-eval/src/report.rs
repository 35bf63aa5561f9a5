//! Evaluation reports: per-benchmark Pass@1 with standard errors and their average, as JSON
//! and Markdown, and side-by-side tables of several models (the shape of the paper's tables).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;
use crate::error::{Error, Result};

/// The score of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchScore {
    /// Benchmark name.
    pub bench: String,
    /// Problems with at least one completion.
    pub problems: usize,
    /// Completions graded.
    pub completions: usize,
    /// Pass@1 in percent: the mean over problems of the fraction of right samples.
    pub pass_at_1_pct: f64,
    /// Standard error of that mean over problems, in percent points.
    pub stderr_pct: f64,
    /// Mean generated tokens per completion.
    pub mean_new_tokens: f64,
    /// Completions cut by the token budget.
    pub truncated: usize,
    /// The grading configuration (`answer`, `solution`, `boxed_answer`, `letters`).
    #[serde(default)]
    pub grading: String,
    /// Completions the grader could not decide within its time budget (graded wrong).
    #[serde(default)]
    pub grading_timeouts: usize,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was evaluated (a model folder, an adapter, a name).
    pub model: String,
    /// The generation settings.
    pub config: EvalConfig,
    /// One score per benchmark, in the order asked for.
    pub benches: Vec<BenchScore>,
    /// Unweighted mean of the benchmarks' Pass@1 (the paper's "Avg."), in percent.
    pub average_pct: f64,
}

impl Report {
    /// A report over `benches`, with their average.
    pub fn new(model: impl Into<String>, config: EvalConfig, benches: Vec<BenchScore>) -> Report {
        let average_pct = if benches.is_empty() {
            0.0
        } else {
            benches.iter().map(|b| b.pass_at_1_pct).sum::<f64>() / benches.len() as f64
        };
        Report { model: model.into(), config, benches, average_pct }
    }

    /// A Markdown table: one row per benchmark and the average.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation of {}\n", self.model);
        let _ = writeln!(s, "{}\n", settings_line(&self.config));
        let _ = writeln!(
            s,
            "| Benchmark | Problems | Samples | Pass@1 (%) | ± s.e. | Mean tokens | Truncated | Grading | Grader timeouts |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|---:|");
        for b in &self.benches {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {} | {} | {} |",
                b.bench,
                b.problems,
                b.completions,
                b.pass_at_1_pct,
                b.stderr_pct,
                b.mean_new_tokens,
                b.truncated,
                b.grading,
                b.grading_timeouts
            );
        }
        let _ = writeln!(s, "| **Average** | | | **{:.2}** | | | | | |", self.average_pct);
        s
    }

    /// Writes `report.json` and `report.md` (each to a temporary name, then renamed).
    pub fn write(&self, json_path: &Path, md_path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Config { field: "report", message: format!("not serialisable: {e}") })?;
        resa_publish::write_atomic(json_path, json.as_bytes())?;
        resa_publish::write_atomic(md_path, self.to_markdown().as_bytes())?;
        Ok(())
    }

    /// Reads a `report.json`.
    pub fn read(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|cause| Error::Io { path: path.into(), cause })?;
        serde_json::from_str(&text).map_err(|e| Error::Malformed {
            path: path.into(),
            line: e.line(),
            message: format!("not an evaluation report: {e}"),
        })
    }
}

fn settings_line(cfg: &EvalConfig) -> String {
    let sampling = match cfg.sampling {
        resa_qwen2::Sampling::Greedy => "greedy".to_string(),
        resa_qwen2::Sampling::Sample { temperature, top_p, top_k } => {
            let k = top_k.map(|k| format!(", top-k {k}")).unwrap_or_default();
            format!("temperature {temperature}, top-p {top_p}{k}")
        }
    };
    format!(
        "Zero-shot, {sampling}, up to {} new tokens, {} sample(s) per problem, seed {}{}.",
        cfg.max_new_tokens,
        cfg.samples,
        cfg.seed,
        if cfg.chat { ", chat template" } else { ", no chat template" }
    )
}

/// The benchmarks of `reports`, each once, in first-seen order: the columns of
/// [`compare_markdown`].
pub fn bench_columns<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Vec<&'a str> {
    let mut benches: Vec<&str> = Vec::new();
    for r in reports {
        for b in &r.benches {
            if !benches.contains(&b.bench.as_str()) {
                benches.push(&b.bench);
            }
        }
    }
    benches
}

/// A table with one row per report and one column per benchmark (the union, in first-seen
/// order) plus the average, as the paper's tables are laid out. A blank cell means the
/// model was not run on that benchmark.
pub fn compare_markdown(rows: &[(&str, &Report)]) -> String {
    let benches = bench_columns(rows.iter().map(|(_, r)| *r));
    let mut s = String::new();
    let _ = write!(s, "| Model |");
    for b in &benches {
        let _ = write!(s, " {b} |");
    }
    let _ = writeln!(s, " Avg. |");
    let _ = writeln!(s, "|---|{}---:|", "---:|".repeat(benches.len()));
    for (name, r) in rows {
        let _ = write!(s, "| {name} |");
        for b in &benches {
            match r.benches.iter().find(|x| x.bench == *b) {
                Some(x) => {
                    let _ = write!(s, " {:.2} ± {:.2} |", x.pass_at_1_pct, x.stderr_pct);
                }
                None => s.push_str(" |"),
            }
        }
        let _ = writeln!(s, " {:.2} |", r.average_pct);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(bench: &str, pct: f64) -> BenchScore {
        BenchScore {
            bench: bench.into(),
            problems: 4,
            completions: 4,
            pass_at_1_pct: pct,
            stderr_pct: 1.0,
            mean_new_tokens: 10.0,
            truncated: 0,
            grading: "answer".into(),
            grading_timeouts: 0,
        }
    }

    #[test]
    fn average_and_tables() {
        let a = Report::new("a", EvalConfig::default(), vec![score("x", 50.0), score("y", 25.0)]);
        assert!((a.average_pct - 37.5).abs() < 1e-12);
        let b = Report::new("b", EvalConfig::default(), vec![score("y", 75.0)]);
        let t = compare_markdown(&[("base", &a), ("tuned", &b)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| Model | x | y | Avg. |");
        assert_eq!(lines[2], "| base | 50.00 ± 1.00 | 25.00 ± 1.00 | 37.50 |");
        assert_eq!(lines[3], "| tuned | | 75.00 ± 1.00 | 75.00 |");
        let md = a.to_markdown();
        assert!(md.contains("temperature 0.6, top-p 0.95, up to 32768 new tokens"), "{md}");
        assert!(md.contains("| **Average** | | | **37.50** |"), "{md}");
    }
}
