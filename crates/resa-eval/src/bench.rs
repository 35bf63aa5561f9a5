//! Benchmark problems: the math sets as shipped in `../shared/data/eval/` (JSONL with `id`,
//! `problem`, `answer`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The paper's math benchmarks, with their file stems.
pub const MATH_BENCHMARKS: [&str; 5] = ["aime24", "aime25", "amc23", "math500", "minerva"];

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable id (`math500-000`).
    pub id: String,
    /// The question.
    pub problem: String,
    /// The gold answer (LaTeX or plain).
    pub answer: String,
}

/// Reads a benchmark JSONL file; every line needs `id`, `problem` and `answer` strings.
pub fn load_problems(path: impl AsRef<Path>) -> Result<Vec<Problem>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io { path: path.to_path_buf(), cause })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Problem = serde_json::from_str(line).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("expected an object with string fields id, problem, answer: {e}"),
        })?;
        out.push(p);
    }
    if out.is_empty() {
        return Err(Error::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// The file of a math benchmark in a folder laid out like `../shared/data/eval/`.
pub fn benchmark_file(dir: impl AsRef<Path>, name: &str) -> PathBuf {
    dir.as_ref().join(format!("{name}.jsonl"))
}
