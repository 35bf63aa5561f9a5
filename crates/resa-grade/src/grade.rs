//! Grading a completion against a gold answer, as the paper's evaluation does (lighteval's
//! extractive match over math-verify 0.9): extract candidates from both sides with the
//! benchmark's [`GradingConfig`], then [`verify`] them pairwise; correct when any pair is
//! equal (`aggregation = max`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::extract::{Budget, Extracted, Target, extract};
use crate::verify::verify;

/// How one benchmark is graded: data, reported in every eval report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradingConfig {
    /// Name (`answer`, `solution`, `boxed_answer`, `letters`, `suite`).
    pub name: String,
    /// What is extracted from the gold text.
    pub gold_targets: Vec<Target>,
    /// What is extracted from the completion.
    pub pred_targets: Vec<Target>,
    /// math-verify's `fallback_mode = "first_match"`: the first matched string is also a
    /// candidate, compared as text.
    pub fallback_first_match: bool,
    /// Decimal places floats are rounded to (lighteval's `precision`).
    pub float_rounding: u32,
    /// Wrap a gold without `$`, `\(`, `\[` or `\boxed` in `\boxed{…}` before extraction (for
    /// answer columns written as bare LaTeX, e.g. MATH's `\frac{\pi}{2}`).
    pub box_bare_gold: bool,
    /// Time budget per completion, in milliseconds (math-verify's timeout is 5 s): a
    /// completion not decided in time is graded wrong and counted as timed out.
    pub budget_ms: u64,
}

impl GradingConfig {
    fn math(name: &str, gold_targets: Vec<Target>, box_bare_gold: bool) -> Self {
        GradingConfig {
            name: name.into(),
            gold_targets,
            pred_targets: vec![Target::Expr, Target::latex_boxed_first()],
            fallback_first_match: true,
            float_rounding: 5,
            box_bare_gold,
            budget_ms: 5000,
        }
    }
    /// AIME24, AIME25, AMC23: the `answer` column, expression extraction only.
    pub fn answer() -> Self {
        Self::math("answer", vec![Target::Expr], false)
    }
    /// MATH-500 and Minerva as the paper grades them: the gold is the whole `solution` text,
    /// LaTeX extraction only (its boxed answer, at math-verify's default priority).
    pub fn solution() -> Self {
        Self::math("solution", vec![Target::latex()], false)
    }
    /// An answer column written as LaTeX without delimiters (MATH-500's `answer`), boxed
    /// and read with expression and LaTeX extraction.
    pub fn boxed_answer() -> Self {
        Self::math("boxed_answer", vec![Target::Expr, Target::latex()], true)
    }
    /// math-verify's own test suite under lighteval's settings: gold with expression and
    /// LaTeX extraction.
    pub fn suite() -> Self {
        Self::math("suite", vec![Target::Expr, Target::latex()], false)
    }
    /// GPQA Diamond: the letter on both sides (lighteval's "NativeLetters" indices).
    pub fn letters() -> Self {
        GradingConfig {
            name: "letters".into(),
            gold_targets: vec![Target::letters()],
            pred_targets: vec![Target::letters()],
            fallback_first_match: false,
            float_rounding: 5,
            box_bare_gold: false,
            budget_ms: 5000,
        }
    }
    /// A configuration by name.
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "answer" => Self::answer(),
            "solution" => Self::solution(),
            "boxed_answer" => Self::boxed_answer(),
            "suite" => Self::suite(),
            "letters" => Self::letters(),
            _ => return None,
        })
    }
    /// A configuration by name, or an error naming the ones there are.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        Self::by_name(name)
            .ok_or_else(|| crate::Error::UnknownConfig { name: name.into(), known: Self::NAMES.join(", ") })
    }
    /// The names [`GradingConfig::by_name`] knows.
    pub const NAMES: [&'static str; 5] = ["answer", "solution", "boxed_answer", "suite", "letters"];
}

/// The verdict on one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graded {
    /// Whether the extracted answer is equivalent to the gold one.
    pub correct: bool,
    /// The extracted answer (the first candidate's text), empty when none was found.
    pub extracted: String,
    /// The time budget or a pattern's backtracking limit ran out (graded wrong).
    #[serde(default)]
    pub timed_out: bool,
}

/// A verdict with its reasons (`resa grade --explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    /// Whether any gold candidate equals any predicted one.
    pub correct: bool,
    /// The configuration used.
    pub config: String,
    /// The first predicted candidate's text (what [`Graded::extracted`] holds).
    pub extracted: String,
    /// Gold candidates (normalised text; `"text:"` marks a string candidate).
    pub gold: Vec<String>,
    /// Predicted candidates.
    pub pred: Vec<String>,
    /// The equal pair (gold index, prediction index).
    pub matched: Option<(usize, usize)>,
    /// The time budget or a pattern's backtracking limit ran out.
    pub timed_out: bool,
    /// Why, in words.
    pub reason: String,
}

fn describe(c: &[Extracted]) -> Vec<String> {
    c.iter()
        .map(|x| match x {
            Extracted::Value { value, text } => format!("{text}  ⟶ {value}"),
            Extracted::Text(t) => format!("text: {t}"),
        })
        .collect()
}

/// Whether `text` holds a `$` that opens or closes math (an escaped `\$`, a dollar sign in
/// an amount, does not).
fn has_math_dollar(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| b[i] == b'$' && (i == 0 || b[i - 1] != b'\\'))
}

fn prepare_gold(config: &GradingConfig, gold: &str) -> String {
    let g = gold.trim();
    // A bare gold is boxed, as an answer column is read; an escaped dollar (`\$1.17`) is an
    // amount, not a math delimiter, so such a gold is boxed too (math-verify reads
    // `\boxed{\$1.17}` as 1.17, and the bare `\$1.17` as nothing).
    let delimited = has_math_dollar(g) || ["\\(", "\\[", "\\boxed"].iter().any(|d| g.contains(d));
    if config.box_bare_gold && !delimited { format!("\\boxed{{{g}}}") } else { g.to_string() }
}

struct Run {
    gold: Vec<Extracted>,
    pred: Vec<Extracted>,
    matched: Option<(usize, usize)>,
    timed_out: bool,
}

fn run(config: &GradingConfig, gold: &str, completion: &str) -> Run {
    let start = Instant::now();
    let budget = Duration::from_millis(config.budget_ms);
    let (g, gb) = extract(&prepare_gold(config, gold), &config.gold_targets, config.fallback_first_match);
    let (p, pb) = if start.elapsed() > budget {
        (Vec::new(), Budget::Exhausted)
    } else {
        extract(completion, &config.pred_targets, config.fallback_first_match)
    };
    let timed_out = gb == Budget::Exhausted || pb == Budget::Exhausted || start.elapsed() > budget;
    let matched = if timed_out { None } else { verify(&g, &p, config.float_rounding) };
    Run { gold: g, pred: p, matched, timed_out }
}

/// Grades a completion with a configuration, with the reasons.
pub fn grade_explained(config: &GradingConfig, gold: &str, completion: &str) -> Explained {
    let Run { gold: g, pred: p, matched, timed_out } = run(config, gold, completion);
    let reason = if timed_out {
        "not decided within the time budget (graded wrong)".to_string()
    } else if g.is_empty() {
        "nothing extracted from the gold".to_string()
    } else if p.is_empty() {
        "nothing extracted from the completion".to_string()
    } else if let Some((i, j)) = matched {
        format!("gold candidate {i} equals predicted candidate {j}")
    } else {
        "no gold candidate equals a predicted one".to_string()
    };
    Explained {
        correct: matched.is_some(),
        config: config.name.clone(),
        extracted: p.first().map(|c| c.text().to_string()).unwrap_or_default(),
        gold: describe(&g),
        pred: describe(&p),
        matched,
        timed_out,
        reason,
    }
}

/// Grades a completion with a configuration.
pub fn grade(config: &GradingConfig, gold: &str, completion: &str) -> Graded {
    let r = run(config, gold, completion);
    let extracted = r.pred.first().map(|c| c.text().to_string()).unwrap_or_default();
    Graded { correct: r.matched.is_some(), extracted, timed_out: r.timed_out }
}

/// Grades a math completion against an answer written as LaTeX or plain text (an answer
/// column): [`GradingConfig::boxed_answer`].
pub fn grade_math(gold: &str, completion: &str) -> Graded {
    grade(&GradingConfig::boxed_answer(), gold, completion)
}

/// Grades a multiple-choice completion (GPQA): the extracted letter against `gold`.
pub fn grade_choice(gold: &str, completion: &str) -> Graded {
    grade(&GradingConfig::letters(), gold, completion)
}

/// The chosen letter A–D, as [`GradingConfig::letters`] extracts it.
pub fn extract_choice(text: &str) -> Option<String> {
    let (c, _) = extract(text, &[Target::letters()], false);
    c.first().map(|x| x.text().to_uppercase())
}
