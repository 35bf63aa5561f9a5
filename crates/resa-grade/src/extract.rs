//! Finding answers in text, ported from math-verify 0.9 (`parser.py`): the same extraction
//! targets (expression, LaTeX, literal strings), the same regular expressions, the same
//! priorities (0: "final answer is … I hope" and boxed when asked; 50: "final answer … is";
//! 100: "answer:"; 200: "answer"; 250/300: anywhere), and the same choice among matches:
//! within the first priority that yields anything, matches are tried from the rightmost end
//! (then the leftmost start) until one parses; with `fallback_mode = "first_match"` the
//! first matched string is kept as a string candidate too.

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex, RegexBuilder};

use crate::math::{Expr, Value, parse_value};
use crate::normalize::{BoxedMode, NormalizationConfig, normalize_latex};

/// What to look for in a text (math-verify's `ExtractionTarget`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Plain numbers (`1,000.5`, `.4`, `28 percent`) and simple arithmetic (`1/2`).
    Expr,
    /// LaTeX spans (`$…$`, `\[…\]`, `\(…\)`, ` […] `, bare `\frac{1}{2}`), optionally with
    /// `\boxed{…}` at `boxed_priority` (math-verify's `boxed_match_priority`; `None` = -1,
    /// boxes not looked for except inside spans).
    Latex {
        /// Priority of boxed matches (0 first; 50 math-verify's default).
        boxed_priority: Option<u32>,
    },
    /// Literal strings (GPQA's letters), case-folded when `lowercase`.
    Strings {
        /// The strings (`["A", "B", "C", "D"]`).
        strings: Vec<String>,
        /// Compare lower-cased.
        lowercase: bool,
    },
}

impl Target {
    /// LaTeX with boxed answers at priority 0 (lighteval's prediction target).
    pub fn latex_boxed_first() -> Target {
        Target::Latex { boxed_priority: Some(0) }
    }
    /// LaTeX with math-verify's default boxed priority (50).
    pub fn latex() -> Target {
        Target::Latex { boxed_priority: Some(50) }
    }
    /// The letters A–D.
    pub fn letters() -> Target {
        Target::Strings { strings: ABCD.map(String::from).to_vec(), lowercase: true }
    }
}

/// One candidate answer taken from a text.
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted {
    /// A parsed value, with the (normalised) text it came from.
    Value {
        /// The value.
        value: Value,
        /// The normalised text.
        text: String,
    },
    /// A matched string kept as text (`fallback_mode = "first_match"`, and string targets).
    Text(String),
}

impl Extracted {
    /// The text of the candidate.
    pub fn text(&self) -> &str {
        match self {
            Extracted::Value { text, .. } | Extracted::Text(text) => text,
        }
    }
}

/// Why extraction stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Everything was searched.
    Complete,
    /// A pattern exceeded its backtracking limit (the text is graded on what was found).
    Exhausted,
}

const BACKTRACK_LIMIT: usize = 20_000_000;

fn build(p: &str, dotall: bool) -> Regex {
    let p = if dotall { format!("(?s){p}") } else { p.to_string() };
    RegexBuilder::new(&p)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .unwrap_or_else(|e| panic!("extraction pattern {p}: {e}"))
}

/// Python's `$` without MULTILINE: the end, or before a final newline.
const END: &str = r"(?=\n?\z)";

fn expr_patterns() -> Vec<(Regex, u32)> {
    let number = r"(?<!\d)(?:(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|(?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|(?P<decimal3>\.\d+)|(?P<integer3>-?\d+))(?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?";
    let ops = r"\+\-\*×/\^\(\)÷";
    let all = format!(r"[\d\.\s{ops}]");
    let expr = format!(r"(?P<expr>-?\(?-?\d{all}*[{ops}]{all}+\)?)");
    let prefix = r"(?:\A|\s|=)(?:\*\*)?";
    let suffix = format!(r"(?:\*\*)?(?:\.|,|:|\s|\)|\$|{END})");
    let currency = "[$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₴₵₶₷₸₹₺₻₼₽₾₿]";
    let expr_anchored = format!("(?:{prefix}{expr}{suffix})");
    let number_anchored = format!("(?:{prefix}{currency}?{number})");
    let eon = format!("(?:{expr_anchored}|{number_anchored})");
    let answer = "(?i:answer)";
    [
        (format!(r"(?i:final answer is):?\s*{eon}\.?\s?I hope"), 0),
        (format!(r"(?i:final answer.{{0,100}}?)\s+is:?{eon}"), 50),
        (format!(r"{answer}:(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"), 100),
        (format!(r"{answer}(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"), 200),
        (expr_anchored, 300),
        (number_anchored, 300),
    ]
    .into_iter()
    .map(|(p, prio)| (build(&p, false), prio))
    .collect()
}

fn latex_env(prefix: &str, boxed: bool) -> String {
    let percent = format!(r"(?P<{prefix}percent>(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct))");
    let dd = r"(?:[^$]|\$(?!\$))";
    let db = r"(?:[^\\]|\\(?!\]))";
    let id = r"(?:\\[$]|[^\n$])";
    let ip = r"(?:[^\\\n]|\\(?!\)))";
    let ib = r"[^\n\]\[]";
    let content = |c: &str| {
        if boxed { format!(r"{c}*?\\boxed\{{{c}+?\}}{c}*?") } else { format!("{c}+?") }
    };
    let mut patterns = vec![
        format!(r"(?<!\\)\$\$(?P<{prefix}latexDisplayDollar>{})(?<!\\)\$\$", content(dd)),
        format!(r"(?<!\\)\\\[(?P<{prefix}latexDisplayBracket>{})(?<!\\)\\\]", content(db)),
        format!(r"(?<!\\|\d)\$(?P<{prefix}latexInlineDollar>{})(?<!\\)\$", content(id)),
        format!(r"(?<!\\)\\\((?P<{prefix}latexInlineParenthesis>{})(?<!\\)\\\)", content(ip)),
        format!(r"\s\[(?P<{prefix}latexInlineBracket>{})\]\s", content(ib)),
    ];
    if !boxed {
        let n = r"-?\d+(?:[.,]\d+)?";
        patterns.push(format!(r"(?P<{prefix}latexFraction>-?\\frac\{{{n}\}}\{{{n}\}})"));
    }
    format!(r"(?:(?:{})\s*{percent}?)", patterns.join("|"))
}

fn latex_patterns(boxed_priority: Option<u32>) -> Vec<(Regex, u32)> {
    let next: String =
        (1..=5).map(|i| format!(r"(?:\s*(?:,?and|,?or|,)\s*{})?", latex_env(&format!("next{i}_"), false))).collect();
    let envs = format!("(?:{}{next})", latex_env("first_", false));
    let answer = "(?i:answer)";
    let mut out = vec![
        (format!(r"(?i:final answer is):?\s*{envs}\.?\s?I hope"), 0),
        (format!(r"(?i:final answer.{{0,100}}?)\s+is:?\s*{envs}"), 50),
        (format!(r"{answer}:.{{0,50}}?{envs}"), 100),
        (format!(r"{answer}.{{0,50}}?{envs}"), 200),
        (envs.clone(), 300),
    ];
    if let Some(p) = boxed_priority {
        let next: String = (1..=5)
            .map(|i| format!(r"\s*(?:\s*(?:,?and|,?or|,)\s*{})?", latex_env(&format!("next{i}_"), true)))
            .collect();
        out.push((format!("{}{next}", latex_env("first_", true)), p));
        out.push((r"(?P<first_latexBoxed>\\boxed\{.+\})".to_string(), p));
    }
    out.into_iter().map(|(p, prio)| (build(&p, true), prio)).collect()
}

fn string_patterns(strings: &[String]) -> Vec<(Regex, u32)> {
    // lighteval's indices extraction: a letter, or the letter in parentheses (`(B)`).
    let keys: Vec<String> = strings
        .iter()
        .map(|s| {
            let e = fancy_regex::escape(s);
            format!(r"(?:{e}|\({e}\))")
        })
        .collect();
    let keys = format!("(?P<string_keys>{})", keys.join("|"));
    let suffix = format!(r"(?:\*\*)?(?:\.|,|:|\s|{END})");
    let answer_re = format!(r"(?:\A|\s)(?:\*\*)?{keys}{suffix}");
    let answer_start = format!(r"\A(?:\*\*)?{keys}{suffix}");
    [
        (format!(r"(?i:final answer is):?\s*{keys}\.?\s?I hope"), 0),
        (format!(r"(?i:final answer.{{0,100}}?)\s+is:?\s*{keys}"), 50),
        (format!(r"(?i:answer):.{{0,50}}?{answer_re}"), 100),
        (format!(r"(?i:answer).{{0,50}}?{answer_re}"), 200),
        (answer_start, 250),
        (format!(r"\n(?:\*\*)?{keys}{suffix}"), 250),
        (answer_re, 300),
    ]
    .into_iter()
    .map(|(p, prio)| (build(&p, false), prio))
    .collect()
}

static EXPR: LazyLock<Vec<(Regex, u32)>> = LazyLock::new(expr_patterns);
static LATEX_BOXED_0: LazyLock<Vec<(Regex, u32)>> = LazyLock::new(|| latex_patterns(Some(0)));
static LATEX_BOXED_50: LazyLock<Vec<(Regex, u32)>> = LazyLock::new(|| latex_patterns(Some(50)));
static LATEX_NO_BOX: LazyLock<Vec<(Regex, u32)>> = LazyLock::new(|| latex_patterns(None));
/// GPQA's letters A–D, the string target every choice grading uses.
static LETTERS_ABCD: LazyLock<Vec<(Regex, u32)>> = LazyLock::new(|| string_patterns(&ABCD.map(String::from)));
const ABCD: [&str; 4] = ["A", "B", "C", "D"];

/// A target's patterns with their priorities (the common ones compiled once).
type Patterns = std::borrow::Cow<'static, [(Regex, u32)]>;

fn patterns(target: &Target) -> Patterns {
    use std::borrow::Cow;
    match target {
        Target::Expr => Cow::Borrowed(&EXPR[..]),
        Target::Latex { boxed_priority: Some(0) } => Cow::Borrowed(&LATEX_BOXED_0[..]),
        Target::Latex { boxed_priority: Some(50) } => Cow::Borrowed(&LATEX_BOXED_50[..]),
        Target::Latex { boxed_priority: None } => Cow::Borrowed(&LATEX_NO_BOX[..]),
        Target::Latex { boxed_priority } => Cow::Owned(latex_patterns(*boxed_priority)),
        Target::Strings { strings, .. } if strings.iter().map(String::as_str).eq(ABCD) => {
            Cow::Borrowed(&LETTERS_ABCD[..])
        }
        Target::Strings { strings, .. } => Cow::Owned(string_patterns(strings)),
    }
}

/// A number as math-verify builds it from the number groups: separators dropped, leading
/// zeros stripped, decimal comma read as a point; `float` when it has a decimal part.
fn number_value(integer: &str, decimal: &str, pct: bool) -> Option<(Value, String)> {
    // Python's `integer.translate(…", ").lstrip("0") or "0"`: a sign stops the stripping.
    let int: String = integer.chars().filter(|c| *c != ',' && *c != ' ').collect();
    let int = match int.trim_start_matches('0') {
        "" => "0",
        rest => rest,
    };
    let text = format!("{int}{}", decimal.replace(',', "."));
    let value: f64 = text.parse().ok()?;
    let mut e = Expr::Num { value: value.abs(), float: !decimal.is_empty() };
    if text.starts_with('-') {
        e = Expr::Neg(Box::new(e));
    }
    if pct {
        e = Expr::Pct(Box::new(e));
    }
    Some((Value::Expr(e), text))
}

fn extract_expr(c: &Captures) -> (Option<Value>, String) {
    let first = |prefix: &str, names: &[&str]| {
        names
            .iter()
            .find_map(|n| c.name(&format!("{prefix}{n}")).map(|m| m.as_str().to_string()).filter(|s| !s.is_empty()))
    };
    let integer = first("integer", &["1", "2", "3"]).unwrap_or_default();
    let decimal = first("decimal", &["1", "2", "3"]).unwrap_or_default();
    let pct = c.name("percent").is_some_and(|m| !m.as_str().is_empty());
    if !integer.is_empty() || !decimal.is_empty() {
        return match number_value(&integer, &decimal, pct) {
            Some((v, t)) => (Some(v), t),
            None => (None, format!("{integer}{decimal}")),
        };
    }
    let expr = c.name("expr").map(|m| m.as_str().to_string()).unwrap_or_default();
    if expr.is_empty() {
        return (None, expr);
    }
    let parsed = crate::math::parse_expr(&expr.replace('\n', " ")).map(Value::Expr);
    (parsed, expr)
}

const GROUP_KINDS: [&str; 7] = [
    "latexDisplayDollar",
    "latexDisplayBracket",
    "latexInlineDollar",
    "latexInlineParenthesis",
    "latexInlineBracket",
    "latexFraction",
    "latexBoxed",
];

/// Parses a normalised LaTeX string, then (as math-verify) its last equation part.
pub fn parse_latex(normalized: &str) -> Option<Value> {
    if let Some(v) = parse_value(normalized) {
        return Some(v);
    }
    let last = last_equation(normalized);
    if last != normalized { parse_value(&last) } else { None }
}

/// math-verify's `get_last_eq`: without `,` or `;`, a chain `a = b = c` is shortened to its
/// last part.
fn last_equation(latex: &str) -> String {
    if latex.contains(',') || latex.contains(';') {
        return latex.to_string();
    }
    // Split at `=` not preceded by `\`, `<`, `!`, `>`.
    let mut parts = Vec::new();
    let mut start = 0;
    let mut prev = '\0';
    for (i, ch) in latex.char_indices() {
        if ch == '=' && !matches!(prev, '\\' | '<' | '!' | '>') {
            parts.push(&latex[start..i]);
            start = i + 1;
        }
        prev = ch;
    }
    parts.push(&latex[start..]);
    if parts.len() > 2 { parts[parts.len() - 1].to_string() } else { latex.to_string() }
}

fn extract_latex(c: &Captures) -> (Option<Value>, String) {
    let mut values = Vec::new();
    let mut texts = Vec::new();
    let prefixes: Vec<String> =
        std::iter::once("first".to_string()).chain((1..=5).map(|i| format!("next{i}"))).collect();
    for prefix in &prefixes {
        let Some((latex, kind)) = GROUP_KINDS.iter().find_map(|k| {
            c.name(&format!("{prefix}_{k}")).filter(|m| !m.as_str().is_empty()).map(|m| (m.as_str(), *k))
        }) else {
            continue;
        };
        let pct = c.name(&format!("{prefix}_percent")).is_some_and(|m| !m.as_str().is_empty());
        let config = NormalizationConfig {
            boxed: if kind == "latexBoxed" { BoxedMode::Last } else { BoxedMode::All },
            ..NormalizationConfig::default()
        };
        let normalized = normalize_latex(latex, &config);
        let mut value = parse_latex(&normalized);
        if pct {
            value = value.map(|v| match v {
                Value::Expr(e) => Value::Expr(Expr::Pct(Box::new(e))),
                other => other,
            });
        }
        texts.push(normalized);
        values.push(value);
    }
    if values.is_empty() {
        return (None, String::new());
    }
    if values.len() > 1 && values.iter().all(Option::is_some) {
        let mut all = Vec::new();
        for v in values.into_iter().flatten() {
            match v {
                Value::Set(inner) => all.extend(inner),
                v => all.push(v),
            }
        }
        return (Some(Value::Set(all)), texts.join(" and "));
    }
    (values.swap_remove(0), texts.swap_remove(0))
}

fn extract_string(c: &Captures, lowercase: bool) -> (Option<Extracted>, String) {
    let s = c.name("string_keys").map(|m| m.as_str().trim_matches(['(', ')']).to_string()).unwrap_or_default();
    // A string target's candidate is the string itself, compared as text.
    let v = if lowercase { s.to_lowercase() } else { s.clone() };
    (Some(Extracted::Text(v)), s)
}

/// The candidates math-verify's `parse` returns for `text` with these targets and
/// `fallback_mode = "first_match"` (`fallback = true`) or `"no_fallback"`, in
/// `extraction_mode = "any_match"`.
pub fn extract(text: &str, targets: &[Target], fallback: bool) -> (Vec<Extracted>, Budget) {
    let mut budget = Budget::Complete;
    let mut all: Vec<(&Regex, &Target, u32)> = Vec::new();
    let pats: Vec<(Patterns, &Target)> = targets.iter().map(|t| (patterns(t), t)).collect();
    for (ps, t) in &pats {
        for (r, prio) in ps.iter() {
            all.push((r, t, *prio));
        }
    }
    all.sort_by_key(|x| x.2); // stable, as Python's sorted
    let mut out = Vec::new();
    let mut fallbacks: Vec<String> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let prio = all[i].2;
        let group: Vec<_> = all[i..].iter().take_while(|x| x.2 == prio).collect();
        i += group.len();
        let mut matches: Vec<(Captures, &Target)> = Vec::new();
        for (r, t, _) in &group {
            for m in r.captures_iter(text) {
                match m {
                    Ok(c) => matches.push((c, t)),
                    Err(_) => {
                        budget = Budget::Exhausted;
                        break;
                    }
                }
            }
        }
        // Rightmost end first, then leftmost start; ties keep pattern order (stable sort).
        matches.sort_by(|a, b| {
            let (ma, mb) = (a.0.get(0), b.0.get(0));
            let (ea, sa) = ma.map_or((0, 0), |m| (m.end(), m.start()));
            let (eb, sb) = mb.map_or((0, 0), |m| (m.end(), m.start()));
            eb.cmp(&ea).then(sa.cmp(&sb))
        });
        let mut found = false;
        for (c, t) in &matches {
            let as_value =
                |(v, s): (Option<Value>, String)| (v.map(|value| Extracted::Value { value, text: s.clone() }), s);
            let (candidate, s) = match t {
                Target::Expr => as_value(extract_expr(c)),
                Target::Latex { .. } => as_value(extract_latex(c)),
                Target::Strings { lowercase, .. } => extract_string(c, *lowercase),
            };
            if !s.is_empty() {
                fallbacks.push(s);
            }
            if let Some(candidate) = candidate {
                out.push(candidate);
                found = true;
                break;
            }
        }
        if found {
            break;
        }
    }
    if fallback && let Some(f) = fallbacks.into_iter().next() {
        out.push(Extracted::Text(f));
    }
    (out, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred() -> Vec<Target> {
        vec![Target::Expr, Target::latex_boxed_first()]
    }

    #[test]
    fn boxed_first_then_answer_then_anywhere() {
        let (c, _) = extract("So $x=3$ and then \\boxed{5}. Later 7.", &pred(), true);
        assert_eq!(c[0].text(), "5");
        let (c, _) = extract("The answer is 12, not 13 or 14", &pred(), true);
        assert_eq!(c[0].text(), "12");
        let (c, _) = extract("we get 3 then 4", &pred(), true);
        assert_eq!(c[0].text(), "4");
    }

    #[test]
    fn numbers_as_math_verify_builds_them() {
        let (c, _) = extract("it is 1,000.5", &[Target::Expr], true);
        assert_eq!(c[0].text(), "1000.5");
        let (c, _) = extract("about 007 percent", &[Target::Expr], true);
        assert_eq!(c[0].text(), "7");
        assert!(matches!(&c[0], Extracted::Value { value: Value::Expr(Expr::Pct(_)), .. }));
    }

    #[test]
    fn unicode_before_anchors_does_not_panic() {
        for s in ["İ answer: 5", "→ answer is $3$", "ǅ final answer is $\\boxed{2}$. I hope", "answer: İİİ (B)"]
        {
            let _ = extract(s, &pred(), true);
            let _ = extract(s, &[Target::letters()], true);
        }
    }
}
