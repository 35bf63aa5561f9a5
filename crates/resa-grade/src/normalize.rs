//! LaTeX normalisation, ported rule by rule from latex2sympy2_extended 1.11
//! (`math_normalization.normalize_latex`, the step math-verify 0.9 runs on every extracted
//! LaTeX span before parsing). The regular expressions are the Python ones, written for
//! `fancy-regex` (Python's `$` without MULTILINE is `(?=\n?\z)` here).

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex};

/// How `\boxed{…}` is unwrapped before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxedMode {
    /// Every boxed content, joined by commas.
    All,
    /// The last boxed content, with earlier ones only when separated by a short separator.
    Last,
    /// Leave boxes alone.
    None,
}

/// Which normalisation groups run (math-verify's `NormalizationConfig`; its LaTeX
/// extraction turns on all but `equations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizationConfig {
    /// `\mathrm`, `\left`/`\right`, dollars, quotes, `\dfrac`, "and"/"or", percent words, ….
    pub basic_latex: bool,
    /// Trailing unit words (`cm`, `feet`, `\text{…}` at the end).
    pub units: bool,
    /// `\frac12`, `\sqrt3`, `^(…)`, `a/b` of integers.
    pub malformed_operators: bool,
    /// A leading `.`, `0.5` as `\frac{1}{2}`.
    pub nits: bool,
    /// How boxes are unwrapped.
    pub boxed: BoxedMode,
}

impl Default for NormalizationConfig {
    fn default() -> Self {
        Self { basic_latex: true, units: true, malformed_operators: true, nits: true, boxed: BoxedMode::All }
    }
}

fn re(p: &str) -> Regex {
    // The patterns are constants of this file; a failure is a bug caught by every test.
    Regex::new(p).unwrap_or_else(|e| panic!("normalisation pattern {p}: {e}"))
}

const UNITS: &[&str] = &[
    "integerpoint",
    "feet",
    "sue",
    "digit",
    "pound",
    "meal",
    "edge",
    "student",
    "children ticket",
    "multiple",
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m square",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "cent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

static R_LEFT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\m?left(\\\{|\{|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|\\lfloor|\\vert|\\lvert|\\langle|\\llcorner|\\ulcorner)",
    )
});
static R_RIGHT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\m?right(\\\}|\}|\\\||\||\]|\)|\\rbrack|\\rgroup|\\rbrace|\\rbrack|\\vert|\\rvert|\\rceil|\\rfloor|\\vert|\\rvert|\\rangle|\\lrcorner|\\urcorner)",
    )
});
static UNITS_RE: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives = UNITS.join("|");
    re(&format!(r"(\d|\}}|\s)\s*(?:(?:{alternatives})(?:s|es)?)\s*(?=\n?\z)"))
});
static TO_REMOVE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"\\mathrm\{th\}|\\!\s*|\\text\s*\{\s*\}|\\\$|\$|(?<!\\)["']|\\displaystyle"#));
/// (name, pattern, replacement) of latex2sympy2_extended's `to_replace_patterns`, in order.
const TO_REPLACE: &[(&str, &str, &str)] = &[
    ("math", r"\\math(?:rm|it|bf)", r"\text"),
    ("text", r"\\text(?:normal|bf|it|rm)", r"\text"),
    ("frac", r"\\(?:d|t|c)frac", r"\frac"),
    ("decimal_space", r"\s\.", r" 0."),
    ("decimal_brace", r"\{\.", r"{0."),
    ("approx", r"\~\=", r"\approx"),
    ("comma", r"\s*\{\s*,\s*\}", r","),
    ("and_or", r"(?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z])", r","),
    ("and_or_text", r"(,?\s*\\text\{\s*(?:and|or)\s*\})", r","),
    ("backslash_space", r"(?<!\\)\\\s", r" "),
    ("infinity", r"infinity", r"\infty"),
    ("dot", r",?(\\ldots)", r" "),
    ("percentage", r"\s*\bpercentage\b", r"\%"),
    ("percentage_in_text", r"\\text\{percentage\}", r"%"),
    ("percent", r"\s*\bpercent\b", r"\%"),
    ("percent_in_text", r"\\text\{percent\}", r"%"),
    ("pct", r"\s*\bpct\b", r"\%"),
    ("pct_in_text", r"\\text\{pct\}", r"%"),
    ("inf", r"((?<!\\)inf(?!inity))", r"\infty"),
    ("sqrt", r" sqrt", r"\sqrt"),
];
static TO_REPLACE_RE: LazyLock<Regex> = LazyLock::new(|| {
    let joined: Vec<String> = TO_REPLACE.iter().map(|(name, p, _)| format!("(?P<{name}>{p})")).collect();
    re(&joined.join("|"))
});
static COMMAND_SLASH_FIX: LazyLock<Regex> = LazyLock::new(|| re(r"\\\\(?=[a-zA-Z])"));
static PERMUTATION: LazyLock<Regex> = LazyLock::new(|| re(r"\(([a-zA-Z0-9+\-*/\\ ]+?)\)_\{([a-zA-Z0-9+\-*/\\ ]+?)\}"));
static UNIT_SUPERSCRIPT: LazyLock<Regex> = LazyLock::new(|| re(r"(\\(?:text|mbox)\{.*?\})(\^\d|\{\^\d\})?(?=\n?\z)"));
static MALFORMED: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (re(r"\^\s?\((.*?)\)"), r"^{$1}"),
        (re(r"sqrt\s?\((.*?)\)"), r"\sqrt{$1}"),
        (re(r"\\frac\s?(\d)\s?(\d+)"), r"\frac{$1}{$2}"),
        (re(r"\\log_\s?(\d)\s?(\d+)"), r"\log_{$1}{$2}"),
        (re(r"\\frac\s?\{(.*?)\}\s?(\d)"), r"\frac{$1}{$2}"),
        (re(r"\\frac\s?(\d)\s?\{(.*?)\}"), r"\frac{$1}{$2}"),
        (re(r"\\sqrt\s?(\d)"), r"\sqrt{$1}"),
    ]
});
static VALID_SEPARATOR: LazyLock<Regex> = LazyLock::new(|| re(r"\b(and|or)\b|,|;"));

/// `Regex::replace_all` with a literal replacement in Python's `\1` sense (`$1` here); a
/// regex that gives up (backtracking limit) leaves the text unchanged.
fn sub(r: &Regex, text: &str, rep: &str) -> String {
    match r.try_replacen(text, 0, rep) {
        Ok(s) => s.into_owned(),
        Err(_) => text.to_string(),
    }
}

fn has_match(r: &Regex, text: &str) -> bool {
    r.is_match(text).unwrap_or(false)
}

/// The content of `\boxed{…}` / `\fbox{…}`, searched from right to left (latex2sympy2's
/// `extract_boxed_content`). The text is returned unchanged when it holds no box.
pub fn extract_boxed_content(text: &str, mode: BoxedMode) -> String {
    let b = text.as_bytes();
    let mut results: Vec<String> = Vec::new();
    let mut current = text.len();
    let mut last_boxed_start: Option<usize> = None;
    let mut max_pos = text.len();
    loop {
        let boxed_idx = text[..current].rfind("\\boxed");
        let fbox_idx = text[..current].rfind("\\fbox");
        let (start, command_end) = match (boxed_idx, fbox_idx) {
            (None, None) => break,
            (Some(x), None) => (x, x + 6),
            (None, Some(y)) => (y, y + 5),
            (Some(x), Some(y)) => {
                if x > y {
                    (x, x + 6)
                } else {
                    (y, y + 5)
                }
            }
        };
        let mut next = command_end;
        while next < max_pos {
            let Some(ch) = text[next..].chars().next() else { break };
            if !ch.is_whitespace() {
                break;
            }
            next += ch.len_utf8();
        }
        if next >= max_pos {
            break;
        }
        if b[next] == b'{' {
            // Balanced braces up to max_pos.
            let mut depth = 1usize;
            let mut close = None;
            for (i, &c) in b.iter().enumerate().take(max_pos).skip(next + 1) {
                if c == b'{' {
                    depth += 1;
                } else if c == b'}' {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
            }
            let Some(close) = close else {
                if results.is_empty() {
                    results.push(text[next..].to_string());
                }
                break;
            };
            let content = text[next + 1..close].trim().to_string();
            if mode == BoxedMode::Last
                && let Some(last_start) = last_boxed_start
            {
                let between = text.get(close + 1..last_start).unwrap_or("");
                let previous = results.last().map(String::as_str).unwrap_or("");
                let ok = between.chars().count() < 10
                    || (content != previous && between.chars().count() < 70 && has_match(&VALID_SEPARATOR, between));
                if !ok {
                    break;
                }
            }
            if results.last() != Some(&content) {
                results.push(content);
            }
            last_boxed_start = Some(start);
            max_pos = start;
        } else {
            if results.is_empty() {
                results.push(text[next..].to_string());
            }
            break;
        }
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

fn fix_fracs(text: &str) -> String {
    let parts: Vec<&str> = text.split("\\frac").collect();
    let mut out = parts[0].to_string();
    for part in &parts[1..] {
        let part = part.trim_start();
        out.push_str("\\frac");
        let mut ch = part.chars();
        match (ch.next(), ch.next()) {
            (Some('{'), _) => out.push_str(part),
            (Some(a), Some(bc)) => {
                let rest = &part[a.len_utf8() + bc.len_utf8()..];
                if bc != '{' {
                    out.push_str(&format!("{{{a}}}{{{bc}}}{rest}"));
                } else {
                    out.push_str(&format!("{{{a}}}{bc}{rest}"));
                }
            }
            _ => return text.to_string(),
        }
    }
    out
}

fn fix_a_slash_b(text: &str) -> String {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.len() != 2 {
        return text.to_string();
    }
    // Python's int(): optional sign, digits, surrounding whitespace; then the text must be
    // exactly "{a}/{b}".
    let int = |s: &str| s.trim().parse::<i128>().ok();
    match (int(parts[0]), int(parts[1])) {
        (Some(a), Some(b)) if text == format!("{a}/{b}") => format!("\\frac{{{a}}}{{{b}}}"),
        _ => text.to_string(),
    }
}

fn fix_sqrt(text: &str) -> String {
    if !text.contains("\\sqrt") {
        return text.to_string();
    }
    let parts: Vec<&str> = text.split("\\sqrt").collect();
    let mut out = parts[0].to_string();
    for part in &parts[1..] {
        let part = part.trim_start();
        match part.chars().next() {
            Some(c) if c != '{' && c != '[' => {
                out.push_str(&format!("\\sqrt{{{c}}}{}", &part[c.len_utf8()..]));
            }
            _ => {
                out.push_str("\\sqrt");
                out.push_str(part);
            }
        }
    }
    out
}

/// Normalises a LaTeX string as math-verify does before parsing it.
pub fn normalize_latex(text: &str, config: &NormalizationConfig) -> String {
    let mut text = match config.boxed {
        BoxedMode::All | BoxedMode::Last => extract_boxed_content(text, config.boxed),
        BoxedMode::None => text.to_string(),
    };
    if config.basic_latex {
        text = text.replace(r"\mathrm{T}", "T");
        text = text.replace(r"\mathrm{d}", "d").replace(r"{\rm d}", "d");
        text =
            text.replace(r"\left[\begin{matrix}", r"\begin{bmatrix}").replace(r"\end{matrix}\right]", r"\end{bmatrix}");
        text = sub(&R_LEFT, &text, "$1");
        text = sub(&R_RIGHT, &text, "$1");
        text = sub(&PERMUTATION, &text, r"\frac{($1)!}{(($1)-($2))!}");
        text = sub(&TO_REMOVE, &text, "");
        text = replace_in_latex(&text);
        text = text.replace(['\n', '\t'], " ");
        if !text.contains("matrix") {
            text = sub(&COMMAND_SLASH_FIX, &text, r"\");
        }
    }
    if config.units {
        let t = sub(&UNIT_SUPERSCRIPT, &text, "").trim().to_string();
        if !t.is_empty() && t != text {
            text = t;
        }
        for _ in 0..2 {
            let t = sub(&UNITS_RE, &text, "$1");
            if !t.is_empty() && t != text {
                text = t;
            }
        }
    }
    if config.nits {
        if text.starts_with('.') {
            text.insert(0, '0');
        }
        if text == "0.5" {
            text = "\\frac{1}{2}".to_string();
        }
    }
    if config.malformed_operators {
        for (r, rep) in MALFORMED.iter() {
            text = sub(r, &text, rep);
        }
        text = text.replace(" sqrt", "\\sqrt");
        text = fix_sqrt(&text);
        text = fix_fracs(&text);
        text = fix_a_slash_b(&text);
    }
    text.trim().to_string()
}

fn replace_in_latex(text: &str) -> String {
    let r = &*TO_REPLACE_RE;
    let result = r.try_replacen(text, 0, |caps: &Captures| {
        TO_REPLACE.iter().find(|(name, _, _)| caps.name(name).is_some()).map_or("", |(_, _, rep)| *rep).to_string()
    });
    match result {
        Ok(s) => s.into_owned(),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_content_as_latex2sympy() {
        assert_eq!(extract_boxed_content("so \\boxed{3} and \\boxed{4}", BoxedMode::All), "3,4");
        assert_eq!(extract_boxed_content("\\boxed{3} then much later text here \\boxed{4}", BoxedMode::Last), "4");
        assert_eq!(extract_boxed_content("\\boxed{3} and \\boxed{4}", BoxedMode::Last), "3,4");
        assert_eq!(extract_boxed_content("\\boxed{\\frac{1}{2}}", BoxedMode::Last), "\\frac{1}{2}");
        assert_eq!(extract_boxed_content("\\boxed{unclosed", BoxedMode::Last), "{unclosed");
        assert_eq!(extract_boxed_content("no box", BoxedMode::Last), "no box");
    }

    #[test]
    fn normalisation_as_latex2sympy() {
        let c = NormalizationConfig::default();
        assert_eq!(normalize_latex("\\dfrac12", &c), "\\frac{1}{2}");
        assert_eq!(normalize_latex("\\left( 3, \\frac{\\pi}{2} \\right)", &c), "( 3, \\frac{\\pi}{2} )");
        assert_eq!(normalize_latex("5 and 6", &c), "5, 6");
        assert_eq!(normalize_latex("28 percent", &c), "28\\%");
        assert_eq!(normalize_latex("10 cm", &c), "10");
        assert_eq!(normalize_latex(".4", &c), "0.4");
        assert_eq!(normalize_latex("0.5", &c), "\\frac{1}{2}");
        assert_eq!(normalize_latex("3/4", &c), "\\frac{3}{4}");
        assert_eq!(normalize_latex("\\sqrt3", &c), "\\sqrt{3}");
        assert_eq!(normalize_latex("14{,}916", &c), "14,916");
    }
}
