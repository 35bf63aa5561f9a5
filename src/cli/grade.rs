//! `resa grade --input IN.jsonl --out OUT.jsonl`: grade completions produced by any engine.
//!
//! Each input line is an object with `gold`, `completion` and optional `bench`; each output
//! line is the same object with `correct` (bool) and `extracted` (string) added, in the same
//! order. `bench` starting with `gpqa` grades the extracted choice letter; everything else
//! is graded as math (see `resa_eval`). Stable: it is how this grader is compared with others.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use resa::eval::{grade_choice, grade_math};

/// Arguments of `resa grade`.
#[derive(Debug, clap::Args)]
pub struct GradeArgs {
    /// JSONL with `gold`, `completion` and optional `bench`.
    #[arg(long)]
    pub input: PathBuf,
    /// Output JSONL (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: GradeArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let mut out = Vec::new();
    let (mut n, mut right) = (0usize, 0usize);
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
        let g =
            if bench.starts_with("gpqa") { grade_choice(&gold, &completion) } else { grade_math(&gold, &completion) };
        n += 1;
        right += usize::from(g.correct);
        obj.insert("correct".into(), serde_json::Value::Bool(g.correct));
        obj.insert("extracted".into(), serde_json::Value::String(g.extracted));
        out.push(serde_json::to_string(&v)?);
    }
    let mut text = out.join("\n");
    text.push('\n');
    resa::qwen2::safetensors_io::write_atomic(&args.out, text.as_bytes())?;
    eprintln!(
        "graded {n} completions: {right} correct ({:.1}%) → {}",
        100.0 * right as f64 / n.max(1) as f64,
        args.out.display()
    );
    std::io::stderr().flush().ok();
    Ok(())
}
