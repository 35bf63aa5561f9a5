//! `resa grade --input IN.jsonl --out OUT.jsonl`: grade completions produced by any engine.
//!
//! Each input line is an object with `gold`, `completion` and optional `bench`; each output
//! line is the same object with `correct` (bool) and `extracted` (string) added, in the same
//! order. The grading configuration follows `bench` as the paper's evaluation does:
//! `gpqa*` letters; `aime*`, `amc*` the answer column with expression extraction; `math500`,
//! `minerva` the solution text (LaTeX extraction) when `gold` holds a `\boxed{…}`, else the
//! answer column; anything else an answer column in LaTeX or plain text. `--config NAME`
//! forces one (`answer`, `solution`, `boxed_answer`, `suite`, `letters`). `--explain` adds
//! `explain` to every line: the gold and predicted candidates, the pair that matched, whether
//! the grader's time budget ran out, and the reason. Stable: it is how this grader is
//! compared with others.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use resa::eval::{GradingConfig, grade, grade_explained};

/// Arguments of `resa grade`.
#[derive(Debug, clap::Args)]
pub struct GradeArgs {
    /// JSONL with `gold`, `completion` and optional `bench`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output JSONL (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// One grading configuration for every line instead of the one `bench` implies.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(GradingConfig::NAMES))]
    pub config: Option<String>,
    /// Add `explain` to each line: candidates, the matching pair, time-outs, the reason.
    #[arg(long)]
    pub explain: bool,
}

/// The configuration a line's `bench` implies.
fn config_for(bench: &str, gold: &str) -> GradingConfig {
    if bench.starts_with("gpqa") {
        GradingConfig::letters()
    } else if bench.starts_with("aime") || bench.starts_with("amc") {
        GradingConfig::answer()
    } else if (bench.starts_with("math500") || bench.starts_with("minerva")) && gold.contains("\\boxed") {
        GradingConfig::solution()
    } else {
        GradingConfig::boxed_answer()
    }
}

/// Runs the command.
pub fn run(args: GradeArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let mut out = Vec::new();
    let (mut n, mut right, mut timeouts) = (0usize, 0usize, 0usize);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}:{}: invalid JSON", args.input.display(), i + 1))?;
        let Some(obj) = v.as_object_mut() else { bail!("{}:{}: expected a JSON object", args.input.display(), i + 1) };
        let field = |k: &str| -> anyhow::Result<String> {
            match obj.get(k) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(x)) => Ok(x.to_string()),
                _ => bail!("{}:{}: field `{k}` is missing or not a string", args.input.display(), i + 1),
            }
        };
        let (gold, completion) = (field("gold")?, field("completion")?);
        let bench = obj.get("bench").and_then(|b| b.as_str()).unwrap_or("").to_lowercase();
        let config = match &args.config {
            Some(name) => GradingConfig::from_name(name)?,
            None => config_for(&bench, &gold),
        };
        // Candidate texts are only built when asked for.
        let (g, explain) = if args.explain {
            let e = grade_explained(&config, &gold, &completion);
            let g = resa::eval::Graded { correct: e.correct, extracted: e.extracted.clone(), timed_out: e.timed_out };
            (g, Some(serde_json::to_value(&e)?))
        } else {
            (grade(&config, &gold, &completion), None)
        };
        n += 1;
        right += usize::from(g.correct);
        timeouts += usize::from(g.timed_out);
        obj.insert("correct".into(), serde_json::Value::Bool(g.correct));
        obj.insert("extracted".into(), serde_json::Value::String(g.extracted));
        if let Some(e) = explain {
            obj.insert("explain".into(), e);
        }
        out.push(serde_json::to_string(&v)?);
    }
    let mut text = out.join("\n");
    text.push('\n');
    resa::publish::write_atomic(&args.out, text.as_bytes())?;
    eprintln!(
        "graded {n} completions: {right} correct ({:.1}%), {timeouts} not decided in time → {}",
        100.0 * right as f64 / n.max(1) as f64,
        args.out.display()
    );
    std::io::stderr().flush().ok();
    Ok(())
}
