//! Evaluation tasks: the paper's six benchmarks (and the toy world's test split), each a
//! list of items with the user message the model sees, the gold answer and the grader.
//!
//! Prompts are the ones of the lighteval tasks the paper used: the math sets wrap the
//! question in [`resa_data::MATH_EVAL_PROMPT`]; GPQA Diamond uses the simple-evals
//! multiple-choice template ([`GPQA_TEMPLATE`]) with the four choices shuffled by a fixed seed
//! per question. The runner renders the message with the model's chat template.

use std::path::{Path, PathBuf};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::bench::{Problem, benchmark_file, load_problems};
use crate::error::{Error, Result};
use resa_grade::{Graded, GradingConfig, grade};

/// How a completion is graded (each a [`GradingConfig`], reported with the scores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grader {
    /// An answer column in LaTeX or plain text ([`GradingConfig::boxed_answer`]): math sets
    /// other than the paper's, and MATH-500/Minerva copies without their solutions.
    Math,
    /// AIME24/25, AMC23 as the paper grades them: the `answer` column, expression
    /// extraction only ([`GradingConfig::answer`]).
    Answer,
    /// MATH-500, Minerva as the paper grades them: the gold is the whole solution text,
    /// LaTeX extraction only ([`GradingConfig::solution`]).
    Solution,
    /// The chosen letter A–D ([`GradingConfig::letters`]).
    Choice,
    /// The text inside the last `<answer>…</answer>` compared as mathematics (the toy
    /// world's format); no tag means no answer.
    AnswerTag,
}

impl Grader {
    /// The grading configuration.
    pub fn config(self) -> GradingConfig {
        match self {
            Grader::Math | Grader::AnswerTag => GradingConfig::boxed_answer(),
            Grader::Answer => GradingConfig::answer(),
            Grader::Solution => GradingConfig::solution(),
            Grader::Choice => GradingConfig::letters(),
        }
    }

    /// Grades one completion.
    pub fn grade(self, gold: &str, completion: &str) -> Graded {
        match self {
            Grader::AnswerTag => match answer_tag(completion) {
                Some(inner) => {
                    let g = grade(&self.config(), gold, &format!("\\boxed{{{inner}}}"));
                    Graded { extracted: inner.to_string(), ..g }
                }
                None => Graded { correct: false, extracted: String::new(), timed_out: false },
            },
            _ => grade(&self.config(), gold, completion),
        }
    }
}

/// The trimmed text inside the last `<answer>…</answer>`.
fn answer_tag(text: &str) -> Option<&str> {
    let start = text.rfind("<answer>")? + "<answer>".len();
    let end = text[start..].find("</answer>")? + start;
    let inner = text[start..end].trim();
    (!inner.is_empty()).then_some(inner)
}

/// One problem as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalItem {
    /// Stable id, e.g. `math500-007`.
    pub id: String,
    /// The user message (before the chat template).
    pub message: String,
    /// The gold answer (a letter for multiple choice).
    pub gold: String,
}

/// A named list of items with their grader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Benchmark name, e.g. `math500`.
    pub name: String,
    /// How completions are graded.
    pub grader: Grader,
    /// The problems.
    pub items: Vec<EvalItem>,
}

impl Task {
    /// A math task with the lighteval prompt around each problem, graded as the paper
    /// grades the benchmark of that name: AIME/AMC by their answer column (expression
    /// extraction), MATH-500/Minerva against each problem's solution text when every problem
    /// has one (LaTeX extraction), anything else by its answer column.
    pub fn math(name: impl Into<String>, problems: &[Problem]) -> Task {
        let name = name.into();
        let spec = task_spec(&name).map(|s| s.grader);
        let grader = match spec {
            Some(Grader::Solution) if problems.iter().all(|p| p.solution.is_some()) => Grader::Solution,
            Some(Grader::Answer) => Grader::Answer,
            _ => Grader::Math,
        };
        let items = problems
            .iter()
            .map(|p| EvalItem {
                id: p.id.clone(),
                message: resa_data::math_eval_message(&p.problem),
                gold: match (grader, &p.solution) {
                    (Grader::Solution, Some(sol)) => sol.clone(),
                    _ => p.answer.clone(),
                },
            })
            .collect();
        Task { name, grader, items }
    }

    /// Keeps the first `n` items.
    pub fn truncate(mut self, n: usize) -> Task {
        self.items.truncate(n);
        self
    }
}

/// The simple-evals multiple-choice template (lighteval's `gpqa:diamond` instruction).
pub const GPQA_TEMPLATE: &str = "Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n{Question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}";

/// Where a benchmark comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    /// Name used on the command line and in reports.
    pub name: &'static str,
    /// How it is graded.
    pub grader: Grader,
    /// Number of problems in the paper's evaluation.
    pub size: usize,
    /// The hub dataset lighteval's task reads (feature `hub`); empty when gated.
    pub hub_id: &'static str,
    /// Its split.
    pub split: &'static str,
}

/// The paper's six benchmarks, in the order of its tables.
pub const TASKS: [TaskSpec; 6] = [
    TaskSpec { name: "aime24", grader: Grader::Answer, size: 30, hub_id: "HuggingFaceH4/aime_2024", split: "train" },
    TaskSpec { name: "aime25", grader: Grader::Answer, size: 30, hub_id: "yentinglin/aime_2025", split: "train" },
    TaskSpec { name: "amc23", grader: Grader::Answer, size: 40, hub_id: "math-ai/amc23", split: "test" },
    TaskSpec { name: "math500", grader: Grader::Solution, size: 500, hub_id: "HuggingFaceH4/MATH-500", split: "test" },
    TaskSpec { name: "minerva", grader: Grader::Solution, size: 272, hub_id: "math-ai/minervamath", split: "test" },
    TaskSpec { name: "gpqa_diamond", grader: Grader::Choice, size: 198, hub_id: "", split: "train" },
];

/// The spec of a benchmark by name (`gpqa` is accepted for `gpqa_diamond`).
pub fn task_spec(name: &str) -> Option<&'static TaskSpec> {
    let name = if name == "gpqa" { "gpqa_diamond" } else { name };
    TASKS.iter().find(|t| t.name == name)
}

/// Where [`load_task`] looks for data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSources {
    /// A folder laid out like `../shared/data/eval/` (`aime24.jsonl`, …).
    pub eval_dir: Option<PathBuf>,
    /// The user's copy of GPQA Diamond (`gpqa_diamond.csv`).
    pub gpqa_csv: Option<PathBuf>,
    /// Seed of the per-question choice shuffle of GPQA.
    pub gpqa_seed: u64,
    /// Fetch math sets from the hub when no folder holds them (feature `hub`).
    #[cfg(feature = "hub")]
    pub hub: bool,
    /// Tasks of the caller's own, found by their name before the paper's benchmarks (the toy
    /// world's test split, `resa_toy::world::World::test_task`, is one).
    pub own: Vec<Task>,
}

impl TaskSources {
    /// These sources with `task` loadable by its name.
    pub fn with_task(mut self, task: Task) -> TaskSources {
        self.own.retain(|t| t.name != task.name);
        self.own.push(task);
        self
    }
}

/// Loads a benchmark by name: one of the sources' own tasks, or `aime24`, `aime25`, `amc23`,
/// `math500`, `minerva` from `eval_dir` (or the hub), `gpqa_diamond` from the user's CSV.
pub fn load_task(name: &str, sources: &TaskSources) -> Result<Task> {
    #[cfg(feature = "hub")]
    let hub = sources.hub;
    #[cfg(not(feature = "hub"))]
    let hub = false;
    if let Some(task) = sources.own.iter().find(|t| t.name == name) {
        return Ok(task.clone());
    }
    let spec = task_spec(name).ok_or_else(|| Error::UnknownTask {
        name: name.into(),
        known: sources
            .own
            .iter()
            .map(|t| t.name.as_str())
            .chain(TASKS.iter().map(|t| t.name))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    if spec.grader == Grader::Choice {
        let path = sources.gpqa_csv.as_ref().ok_or_else(|| Error::MissingData {
            task: spec.name.into(),
            message: "GPQA Diamond is gated and never shipped: pass the CSV of the dataset Idavidrein/gpqa \
                      (gpqa_diamond.csv) with --gpqa FILE"
                .into(),
        })?;
        return load_gpqa(path, sources.gpqa_seed);
    }
    if let Some(dir) = &sources.eval_dir {
        let file = benchmark_file(dir, spec.name);
        if file.is_file() {
            return Ok(Task::math(spec.name, &load_problems(&file)?));
        }
        if !hub {
            return Err(Error::MissingData {
                task: spec.name.into(),
                message: format!("{} does not exist", file.display()),
            });
        }
    }
    #[cfg(feature = "hub")]
    if hub {
        return load_from_hub(spec);
    }
    Err(Error::MissingData {
        task: spec.name.into(),
        message: if cfg!(feature = "hub") {
            "give a folder of benchmark JSONL files (--eval-dir) or allow the hub (--hub)".into()
        } else {
            "give a folder of benchmark JSONL files (--eval-dir); reading them from the hub needs a build with the \
             `hub` feature"
                .into()
        },
    })
}

#[cfg(feature = "hub")]
fn load_from_hub(spec: &TaskSpec) -> Result<Task> {
    let options = resa_data::ReadOptions::default();
    let (rows, _, _) = resa_data::hub::load_dataset(spec.hub_id, spec.split, &options)
        .map_err(|e| Error::MissingData { task: spec.name.into(), message: e.to_string() })?;
    let problems: Vec<Problem> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| Problem {
            id: format!("{}-{i:03}", spec.name),
            problem: r.problem,
            answer: r.answer,
            solution: None,
        })
        .collect();
    Ok(Task::math(spec.name, &problems))
}

/// Reads GPQA's CSV (`Question`, `Correct Answer`, `Incorrect Answer 1..3`) and shuffles the
/// four choices of question `i` with a generator seeded by `(seed, i)`.
pub fn load_gpqa(path: impl AsRef<Path>, seed: u64) -> Result<Task> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io { path: path.to_path_buf(), cause })?;
    let records = parse_csv(&text).map_err(|(line, message)| Error::Malformed { path: path.into(), line, message })?;
    let (header, rows) = records.split_first().ok_or_else(|| Error::Empty(path.to_path_buf()))?;
    let column = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| Error::Malformed {
            path: path.into(),
            line: 1,
            message: format!("no column `{name}` in the header"),
        })
    };
    let q = column("Question")?;
    let answers = [
        column("Correct Answer")?,
        column("Incorrect Answer 1")?,
        column("Incorrect Answer 2")?,
        column("Incorrect Answer 3")?,
    ];
    let mut items = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let get = |c: usize, name: &str| {
            row.get(c).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).ok_or_else(|| Error::Malformed {
                path: path.into(),
                line: i + 2,
                message: format!("record {} has no `{name}`", i + 1),
            })
        };
        let question = get(q, "Question")?;
        let mut choices: Vec<(bool, String)> = Vec::with_capacity(4);
        for (k, &c) in answers.iter().enumerate() {
            let name = if k == 0 { "Correct Answer".to_string() } else { format!("Incorrect Answer {k}") };
            choices.push((k == 0, get(c, &name)?));
        }
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        choices.shuffle(&mut rng);
        let gold = choices.iter().position(|(correct, _)| *correct).map(|p| ["A", "B", "C", "D"][p]).unwrap_or("A");
        let message = GPQA_TEMPLATE
            .replace("{Question}", &question)
            .replace("{A}", &choices[0].1)
            .replace("{B}", &choices[1].1)
            .replace("{C}", &choices[2].1)
            .replace("{D}", &choices[3].1);
        items.push(EvalItem { id: format!("gpqa_diamond-{:03}", items.len()), message, gold: gold.into() });
    }
    if items.is_empty() {
        return Err(Error::Empty(path.to_path_buf()));
    }
    Ok(Task { name: "gpqa_diamond".into(), grader: Grader::Choice, items })
}

/// RFC 4180 CSV: comma-separated, fields optionally in double quotes (which may hold
/// commas, line breaks and doubled quotes). Errors carry the 1-based line.
fn parse_csv(text: &str) -> std::result::Result<Vec<Vec<String>>, (usize, String)> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut quoted_start = 0usize;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                quoted_start = line;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                line += 1;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((quoted_start, "a quoted field is never closed".into()));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let rows = parse_csv("a,b,c\r\n\"x, y\",\"he said \"\"hi\"\"\",\"two\nlines\"\n1,,3").expect("valid csv");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], vec!["x, y", "he said \"hi\"", "two\nlines"]);
        assert_eq!(rows[2], vec!["1", "", "3"]);
        assert_eq!(parse_csv("a\n\"open").expect_err("unclosed quote").0, 2);
    }

    #[test]
    fn answer_tag_grader() {
        let g = Grader::AnswerTag.grade("32", " 7+5=12 12*3=36 36-4=32 </think> <answer> 32 </answer>");
        assert!(g.correct);
        assert_eq!(g.extracted, "32");
        // A truncated completion has no answer, even when its last number is right.
        let g = Grader::AnswerTag.grade("32", " 7+5=12 12*3=36 36-4=32");
        assert!(!g.correct);
        assert_eq!(g.extracted, "");
        assert!(!Grader::AnswerTag.grade("32", "<answer> 31 </answer>").correct);
    }
}
