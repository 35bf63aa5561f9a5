//! Grading a completion against a gold answer.

use serde::{Deserialize, Serialize};

use crate::extract::{extract, normalize, parse_gold};
use crate::math::{Value, value_equal};

/// The verdict on one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graded {
    /// Whether the extracted answer is equivalent to the gold one.
    pub correct: bool,
    /// The extracted (normalised) answer, empty when none was found.
    pub extracted: String,
}

/// Grades a math completion: extract the final answer (boxed first, …), parse both, and
/// compare numerically / symbolically; answers that are not mathematics are compared as
/// normalised text.
pub fn grade_math(gold: &str, completion: &str) -> Graded {
    let gold = parse_gold(gold);
    let (found, fallback) = extract(completion);
    if let Value::Text(g) = &gold.value {
        // Not mathematics: the highest-priority candidate, as text.
        let text = fallback.map(|f| normalize(&f)).unwrap_or_default();
        let p: String = text.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
        return Graded { correct: !p.is_empty() && *g == p, extracted: text };
    }
    match found {
        Some(pred) => {
            let correct = match &gold.value {
                Value::Text(g) => {
                    let p: String = pred.text.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
                    *g == p
                }
                gv => value_equal(gv, &pred.value),
            };
            Graded { correct, extracted: pred.text }
        }
        None => {
            let text = fallback.map(|f| normalize(&f)).unwrap_or_default();
            let correct = matches!(&gold.value, Value::Text(g) if {
                let p: String = text.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
                !p.is_empty() && *g == p
            });
            Graded { correct, extracted: text }
        }
    }
}

/// Grades a multiple-choice completion (GPQA): the extracted letter A–D against `gold`.
pub fn grade_choice(gold: &str, completion: &str) -> Graded {
    let letter = extract_choice(completion);
    let correct = letter.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(gold.trim()));
    Graded { correct, extracted: letter.unwrap_or_default() }
}

/// The chosen letter: "Answer: X" (last), else a lone letter A–D (last).
pub fn extract_choice(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    if let Some(pos) = lower.rfind("answer") {
        let rest = &text[pos + 6..];
        let rest = rest.trim_start_matches(|c: char| c == ':' || c == ' ' || c == '*' || c == '(' || c.is_whitespace());
        let rest = rest.strip_prefix("is").map_or(rest, |r| r.trim_start_matches([' ', ':', '(', '*']));
        if let Some(c) = rest.chars().next()
            && "ABCD".contains(c)
            && rest.chars().nth(1).is_none_or(|n| !n.is_alphanumeric())
        {
            return Some(c.to_string());
        }
    }
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).rev().find_map(|i| {
        let c = chars[i];
        let before = if i > 0 { chars[i - 1] } else { ' ' };
        let after = chars.get(i + 1).copied().unwrap_or(' ');
        ("ABCD".contains(c) && !before.is_alphanumeric() && !after.is_alphanumeric()).then(|| c.to_string())
    })
}
