//! Reading question–answer rows from JSONL, JSON-array or Parquet files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One training row: a question and its final answer, and, where the data has one, a
/// worked solution (the chain of thought of CoT-based SFT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaRow {
    /// The question.
    pub problem: String,
    /// The final answer (no chain of thought).
    pub answer: String,
    /// The worked solution, when the row has one (`solution` in DeepScaleR's data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
}

impl QaRow {
    /// A row without a solution.
    pub fn new(problem: impl Into<String>, answer: impl Into<String>) -> Self {
        QaRow { problem: problem.into(), answer: answer.into(), solution: None }
    }
}

/// Which keys hold the problem and the answer, and whether bad rows are errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Keys tried in order for the problem (default `problem`, `question`, `prompt`).
    pub problem_keys: Vec<String>,
    /// Keys tried in order for the answer (default `answer`).
    pub answer_keys: Vec<String>,
    /// Keys tried in order for the optional worked solution (default `solution`).
    pub solution_keys: Vec<String>,
    /// Reject the file at the first row with a missing or empty field instead of skipping it.
    pub strict: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            problem_keys: vec!["problem".into(), "question".into(), "prompt".into()],
            answer_keys: vec!["answer".into()],
            solution_keys: vec!["solution".into()],
            strict: false,
        }
    }
}

impl ReadOptions {
    /// Default keys, strict.
    pub fn strict() -> Self {
        ReadOptions { strict: true, ..Self::default() }
    }
}

/// What reading skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    /// Rows read successfully.
    pub rows: usize,
    /// Rows skipped because no problem key held a non-empty string.
    pub missing_problem: usize,
    /// Rows skipped because no answer key held a non-empty value.
    pub missing_answer: usize,
}

impl ReadReport {
    /// All skipped rows.
    pub fn skipped(&self) -> usize {
        self.missing_problem + self.missing_answer
    }
}

/// A field as text: strings as they are, numbers (answers are sometimes numbers) printed;
/// empty or whitespace-only strings, null, and other types count as missing.
fn field(obj: &serde_json::Map<String, serde_json::Value>, keys: &[String]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(k)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// What a row holds under the first of `keys` present: for messages.
fn describe_field(obj: &serde_json::Map<String, serde_json::Value>, keys: &[String]) -> String {
    match keys.iter().find_map(|k| obj.get(k).map(|v| (k, v))) {
        None => "is missing".into(),
        Some((k, v)) => {
            let what = match v {
                serde_json::Value::Null => "null",
                serde_json::Value::String(_) => "an empty string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
            };
            format!("is {what} (under `{k}`)")
        }
    }
}

/// The rows of a Parquet file (any compression the `parquet` crate reads: snappy, zstd,
/// uncompressed) as JSON objects, numbered from 1.
fn parquet_values(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let malformed = |row: usize, message: String| Error::Malformed { path: path.to_path_buf(), line: row, message };
    let file = std::fs::File::open(path).map_err(|cause| Error::Io { path: path.to_path_buf(), cause })?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| malformed(0, format!("not a readable Parquet file: {e}")))?;
    let rows = reader.get_row_iter(None).map_err(|e| malformed(0, format!("cannot read rows: {e}")))?;
    rows.enumerate()
        .map(|(i, row)| {
            row.map(|r| (i + 1, r.to_json_value())).map_err(|e| malformed(i + 1, format!("cannot decode row: {e}")))
        })
        .collect()
}

/// Reads a `.parquet` file, a `.jsonl` (one object per line) or a `.json` (an array of
/// objects) file. Rows and lines are numbered from 1 in errors.
pub fn read_qa(path: impl AsRef<Path>, options: &ReadOptions) -> Result<(Vec<QaRow>, ReadReport)> {
    let path = path.as_ref();
    let values = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        parquet_values(path)?
    } else {
        json_values(path)?
    };
    rows_from_values(path, values, options)
}

/// Reads several files (e.g. the shards of a hub dataset) as one dataset, in order.
pub fn read_qa_files(paths: &[PathBuf], options: &ReadOptions) -> Result<(Vec<QaRow>, ReadReport)> {
    let mut rows = Vec::new();
    let mut report = ReadReport::default();
    for p in paths {
        let (r, rep) = read_qa(p, options)?;
        rows.extend(r);
        report.rows += rep.rows;
        report.missing_problem += rep.missing_problem;
        report.missing_answer += rep.missing_answer;
    }
    if paths.is_empty() {
        return Err(Error::Empty { path: PathBuf::from("<no files>"), reason: "no data files given".into() });
    }
    Ok((rows, report))
}

fn json_values(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io { path: path.to_path_buf(), cause })?;
    let malformed = |line: usize, message: String| Error::Malformed { path: path.to_path_buf(), line, message };
    Ok(if text.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| malformed(e.line(), format!("not a JSON array of objects: {e}")))?;
        v.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map(|v| (i + 1, v)).map_err(|e| malformed(i + 1, format!("invalid JSON: {e}")))
            })
            .collect::<Result<_>>()?
    })
}

fn rows_from_values(
    path: &Path,
    values: Vec<(usize, serde_json::Value)>,
    options: &ReadOptions,
) -> Result<(Vec<QaRow>, ReadReport)> {
    let malformed = |line: usize, message: String| Error::Malformed { path: path.to_path_buf(), line, message };
    let mut rows = Vec::with_capacity(values.len());
    let mut report = ReadReport::default();
    // What the first skipped row held, for the message when no row is usable.
    let mut first_skip: Option<String> = None;
    for (line, value) in values {
        let serde_json::Value::Object(obj) = value else {
            return Err(malformed(line, "expected a JSON object".into()));
        };
        let missing = |field: &str, keys: &[String]| Error::MissingField {
            path: PathBuf::from(path),
            line,
            field: field.into(),
            tried: keys.join(", "),
            found: describe_field(&obj, keys),
        };
        let Some(problem) = field(&obj, &options.problem_keys) else {
            if options.strict {
                return Err(missing("problem", &options.problem_keys));
            }
            report.missing_problem += 1;
            first_skip.get_or_insert_with(|| {
                format!("line {line}: `problem` {}", describe_field(&obj, &options.problem_keys))
            });
            continue;
        };
        let Some(answer) = field(&obj, &options.answer_keys) else {
            if options.strict {
                return Err(missing("answer", &options.answer_keys));
            }
            report.missing_answer += 1;
            first_skip
                .get_or_insert_with(|| format!("line {line}: `answer` {}", describe_field(&obj, &options.answer_keys)));
            continue;
        };
        let solution = field(&obj, &options.solution_keys);
        rows.push(QaRow { problem, answer, solution });
    }
    report.rows = rows.len();
    if rows.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            reason: format!(
                "{} without a problem, {} without an answer{}",
                report.missing_problem,
                report.missing_answer,
                first_skip.map_or(String::new(), |f| format!("; the first skipped, {f}"))
            ),
        });
    }
    if report.skipped() > 0 {
        tracing::warn!(path = %path.display(), skipped = report.skipped(), "rows with a missing or empty field were skipped");
    }
    Ok((rows, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    #[test]
    fn jsonl_with_field_fallbacks_and_skips() {
        let (_d, p) = write(
            "{\"problem\": \"p1\", \"answer\": \"1\"}\n\n{\"question\": \"p2\", \"answer\": 2}\n{\"prompt\": \"p3\", \"answer\": \"\"}\n{\"answer\": \"4\"}\n",
            "a.jsonl",
        );
        let (rows, report) = read_qa(&p, &ReadOptions::default()).expect("reads");
        assert_eq!(rows, vec![QaRow::new("p1", "1"), QaRow::new("p2", "2")]);
        assert_eq!((report.rows, report.missing_problem, report.missing_answer), (2, 1, 1));
        match read_qa(&p, &ReadOptions::strict()) {
            Err(Error::MissingField { line, field, .. }) => assert_eq!((line, field.as_str()), (4, "answer")),
            other => panic!("expected MissingField, got {other:?}"),
        }
    }

    #[test]
    fn a_field_of_the_wrong_kind_is_named_as_such() {
        let (_d, p) = write("{\"problem\": \"p\", \"answer\": [\"1\", \"2\"]}\n", "a.jsonl");
        let err = read_qa(&p, &ReadOptions::strict()).expect_err("array answer");
        let msg = err.to_string();
        assert!(msg.contains(":1: field `answer` is an array (under `answer`)"), "{msg}");
        let (_d, p) = write("{\"problem\": \"p\"}\n", "b.jsonl");
        let msg = read_qa(&p, &ReadOptions::strict()).expect_err("missing").to_string();
        assert!(msg.contains("field `answer` is missing"), "{msg}");
    }

    #[test]
    fn json_array() {
        let (_d, p) = write("[{\"problem\": \"p\", \"answer\": \"a\"}]", "a.json");
        assert_eq!(read_qa(&p, &ReadOptions::default()).expect("reads").0.len(), 1);
    }

    #[test]
    fn bad_files() {
        let (_d, p) = write("{\"problem\": \"p\", \"answer\": \"a\"}\n{oops\n", "bad.jsonl");
        match read_qa(&p, &ReadOptions::default()) {
            Err(Error::Malformed { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let (_d, p) = write("{\"x\": 1}\n", "empty.jsonl");
        assert!(matches!(read_qa(&p, &ReadOptions::default()), Err(Error::Empty { .. })));
        let (_d, p) = write("[1, 2]", "nums.json");
        assert!(matches!(read_qa(&p, &ReadOptions::default()), Err(Error::Malformed { .. })));
        assert!(matches!(read_qa("/no/such/file.jsonl", &ReadOptions::default()), Err(Error::Io { .. })));
    }
}
