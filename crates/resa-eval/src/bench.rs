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
    /// The full solution text (`meta.solution` in the shipped files, `solution` on the hub),
    /// which the paper grades MATH-500 and Minerva against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
}

#[derive(Deserialize)]
struct RawProblem {
    id: String,
    problem: String,
    answer: String,
    #[serde(default)]
    solution: Option<String>,
    #[serde(default)]
    meta: Option<serde_json::Value>,
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
        let p: RawProblem = serde_json::from_str(line).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("expected an object with string fields id, problem, answer: {e}"),
        })?;
        let meta_solution = match p.meta.as_ref().and_then(|m| m.get("solution")) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(Error::Malformed {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("`meta.solution` must be a string, found {other}"),
                });
            }
        };
        out.push(Problem { id: p.id, problem: p.problem, answer: p.answer, solution: p.solution.or(meta_solution) });
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
