//! Finding the final answer in a completion, in the manner of math-verify's extraction for
//! the paper's math tasks: `\boxed{…}` and "final answer is …" first, then "answer: …", then
//! the last LaTeX span or number in the text; and normalising LaTeX for parsing.

use crate::math::{Value, parse_value};

/// The contents of every `\boxed{…}` / `\fbox{…}` (balanced braces), in order.
pub fn boxed(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["\\boxed", "\\fbox"] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(key) {
            let start = from + pos + key.len();
            from = start;
            let rest = &text[start..];
            let rest_trim = rest.trim_start();
            if let Some(body) = rest_trim.strip_prefix('{') {
                let mut depth = 1;
                let mut end = None;
                for (i, ch) in body.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(i);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(e) = end {
                    out.push((start, body[..e].to_string()));
                }
            } else if let Some(word) = rest.strip_prefix(' ') {
                // \boxed 5
                let w: String = word.chars().take_while(|c| !c.is_whitespace() && *c != '$').collect();
                if !w.is_empty() {
                    out.push((start, w));
                }
            }
        }
    }
    out.sort_by_key(|(p, _)| *p);
    out.into_iter().map(|(_, s)| s).collect()
}

/// LaTeX spans: `$$…$$`, `\[…\]`, `$…$`, `\(…\)`, with their end offsets.
fn latex_spans(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let pairs: [(&str, &str); 4] = [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let mut matched = false;
        for (open, close) in pairs {
            if text[i..].starts_with(open) && (i == 0 || bytes[i - 1] != b'\\') {
                let body_start = i + open.len();
                let mut search = body_start;
                let mut found = None;
                while let Some(rel) = text[search..].find(close) {
                    let at = search + rel;
                    if at > 0 && bytes[at - 1] == b'\\' {
                        search = at + close.len();
                        continue;
                    }
                    found = Some(at - body_start);
                    break;
                }
                if let Some(rel) = found {
                    let body = &text[body_start..body_start + rel];
                    if !body.trim().is_empty() && (open != "$" || !body.contains('\n')) {
                        out.push((body_start + rel + close.len(), body.to_string()));
                        i = body_start + rel + close.len();
                        matched = true;
                        break;
                    }
                }
            }
        }
        if !matched {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// Numbers and simple arithmetic in plain text, as math-verify's expression patterns find
/// them: after the start, a space or `=`; a number needs nothing after it (so `145^\circ`
/// gives 145), an expression with operators must end at `.`, `,`, `:`, a space, `)`, `$` or
/// the end. Bare `\frac{a}{b}` of plain numbers counts too. Offsets are end positions.
fn plain_numbers(text: &str) -> Vec<(usize, String)> {
    let c: Vec<(usize, char)> = text.char_indices().collect();
    let at = |j: usize| c.get(j).map_or(text.len(), |(p, _)| *p);
    let mut out = Vec::new();
    for k in 0..c.len() {
        let (pos, ch) = c[k];
        let prev = if k > 0 { c[k - 1].1 } else { ' ' };
        let prefix_ok = k == 0 || prev.is_whitespace() || prev == '=' || prev == '*';
        if !prefix_ok {
            continue;
        }
        // \frac{3}{4}, -\frac{3}{4}
        let rest = &text[pos..];
        let frac_body = rest.strip_prefix("-\\frac{").or_else(|| rest.strip_prefix("\\frac{"));
        if let Some(body) = frac_body
            && let Some((num, tail)) = body.split_once("}{")
            && let Some((den, _)) = tail.split_once('}')
            && [num, den].iter().all(|x| !x.is_empty() && x.chars().all(|d| d.is_ascii_digit() || d == '.'))
        {
            let len = rest.len() - body.len() + num.len() + 2 + den.len() + 1;
            out.push((pos + len, rest[..len].to_string()));
            continue;
        }
        let starts = ch.is_ascii_digit()
            || ((ch == '-' || ch == '.' || ch == '(')
                && c.get(k + 1).is_some_and(|(_, d)| d.is_ascii_digit() || *d == '-'));
        if !starts {
            continue;
        }
        // The number: digits with thousands groups (',' or ' '), a decimal part.
        let mut j = k + usize::from(ch == '-');
        if c.get(j).is_some_and(|(_, d)| d.is_ascii_digit()) {
            while j < c.len() {
                let d = c[j].1;
                let group = (d == ',' || d == ' ')
                    && c.get(j + 1..j + 4).is_some_and(|w| w.iter().all(|(_, x)| x.is_ascii_digit()))
                    && c.get(j + 4).is_none_or(|(_, x)| !x.is_ascii_digit());
                if d.is_ascii_digit() {
                    j += 1;
                } else if group {
                    j += 4;
                } else if (d == '.' || d == ',')
                    && c.get(j + 1).is_some_and(|(_, x)| x.is_ascii_digit())
                    && !text[at(k)..at(j)].contains('.')
                {
                    j += 1;
                } else {
                    break;
                }
            }
            let mut num = text[pos..at(j)].to_string();
            let tail = &text[at(j)..];
            if tail.starts_with('%') || tail.trim_start().to_lowercase().starts_with("percent") {
                num.push('%');
            }
            out.push((at(j), num));
        }
        // The expression: [digits . space ops ( )], with an operator, anchored after.
        let mut e = k;
        while e < c.len() && (c[e].1.is_ascii_digit() || ".+-*/^×÷() ".contains(c[e].1)) {
            e += 1;
        }
        while e > k && c[e - 1].1 == ' ' {
            e -= 1;
        }
        let expr = &text[pos..at(e)];
        let has_op = expr.chars().skip(1).any(|x| "+-*/^×÷".contains(x));
        let after = &text[at(e)..];
        let anchored = after.is_empty() || after.starts_with(['.', ',', ':', ' ', ')', '$', '\n']);
        if has_op && anchored && expr.chars().last().is_some_and(|x| x.is_ascii_digit() || x == ')') {
            out.push((at(e), expr.to_string()));
        }
    }
    out
}

/// Normalises a LaTeX answer for parsing: delimiters, spacing commands, `\left`/`\right`,
/// `\dfrac`, text and unit wrappers, degrees, percent, thousands separators, trailing dots.
pub fn normalize(s: &str) -> String {
    const ROW: &str = "\u{1}";
    let mut s = s.trim().replace("\\\\", ROW);
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\quad", " "),
        ("\\qquad", " "),
        ("\\ ", " "),
        ("~", " "),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\le", "<"),
        ("\\$", ""),
        ("$", ""),
        ("\\mathrm{e}", "e"),
        ("\\operatorname", ""),
    ] {
        s = s.replace(from, to);
    }
    // Wrappers: keep content; a trailing unit word after a number is dropped.
    for cmd in ["\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox", "\\textnormal"] {
        while let Some(pos) = s.find(&format!("{cmd}{{")) {
            let body_start = pos + cmd.len() + 1;
            let mut depth = 1;
            let mut end = None;
            for (i, ch) in s[body_start..].char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(body_start + i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { break };
            let body = s[body_start..end].to_string();
            let before = s[..pos].trim_end();
            let is_unit = !before.is_empty()
                && before.chars().last().is_some_and(|c| c.is_ascii_digit() || c == '}')
                && body
                    .trim()
                    .chars()
                    .all(|c| c.is_alphabetic() || c == ' ' || c == '^' || c == '/' || c.is_ascii_digit());
            let replacement = if is_unit { String::new() } else { body };
            let mut after = &s[end + 1..];
            if is_unit {
                for p in ["^2", "^3", "^{2}", "^{3}"] {
                    after = after.strip_prefix(p).unwrap_or(after);
                }
            }
            s = format!("{}{}{}", &s[..pos], replacement, after);
        }
    }
    let mut s = s.replace(ROW, "\\\\").trim().trim_end_matches(['.', ',', ';']).trim().to_string();
    // Number bases: 52_8, 4210_{5} → the digits.
    s = strip_bases(&s);
    // Percent: 50\% → (50)/100.
    if let Some(v) = s.strip_suffix("\\%").or_else(|| s.strip_suffix('%')) {
        s = format!("({})/100", v.trim());
    }
    // Thousands separators in a lone number.
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let groups: Vec<&str> = t.trim_start_matches('-').split(',').collect();
    if groups.len() > 1
        && groups[0].len() <= 3
        && !groups[0].is_empty()
        && groups[0].chars().all(|c| c.is_ascii_digit())
        && groups[1..].iter().enumerate().all(|(i, g)| {
            let digits = if i + 2 == groups.len() { g.split('.').next().unwrap_or("") } else { g };
            digits.len() == 3 && digits.chars().all(|c| c.is_ascii_digit())
        })
    {
        s = t.replace(',', "");
    }
    s
}

/// A parsed candidate: the normalised text and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The normalised answer text.
    pub text: String,
    /// Its value (`Value::Text` when it is not mathematics).
    pub value: Value,
}

fn parsed(raw: &str) -> Option<Extracted> {
    let text = normalize(raw);
    match parse_value(&text) {
        Value::Text(_) => None,
        value => Some(Extracted { text, value }),
    }
}

/// The answer after an anchor (`final answer is`, `answer:`): a LaTeX span starting within
/// 50 characters, else a plain number or simple expression within 50 characters.
fn after_anchor(rest: &str) -> Option<String> {
    let limit = rest.char_indices().nth(60).map_or(rest.len(), |(i, _)| i);
    if let Some((end, body)) = latex_spans(rest).into_iter().next() {
        let start = end.saturating_sub(body.len() + 2);
        if start <= limit {
            return Some(body);
        }
    }
    plain_numbers(rest).into_iter().find(|(end, s)| end.saturating_sub(s.len()) <= limit).map(|(_, s)| s)
}

/// The final answer of a completion, or `None` when nothing parses. The second value is
/// the first raw candidate (reported when nothing parses, and compared as text with
/// answers that are not mathematics).
pub fn extract(text: &str) -> (Option<Extracted>, Option<String>) {
    let lower = text.to_lowercase();
    let mut groups: Vec<Vec<String>> = Vec::new();
    // Priority 0: boxed (last first) and "final answer is … I hope".
    let mut g0: Vec<String> = boxed(text).into_iter().rev().collect();
    if let Some(pos) = lower.rfind("final answer is")
        && let Some(a) = after_anchor(&text[pos + "final answer is".len()..])
    {
        g0.push(a);
    }
    groups.push(g0);
    // Priority 100/200: "answer:" / "answer is" anchors, last first.
    let mut g1 = Vec::new();
    let mut from = lower.len();
    while let Some(pos) = lower[..from].rfind("answer") {
        if let Some(a) = after_anchor(&text[pos + "answer".len()..]) {
            g1.push(a);
        }
        from = pos;
    }
    groups.push(g1);
    // Priority 300: every LaTeX span and plain number, by end position, last first.
    let mut spans = latex_spans(text);
    spans.extend(plain_numbers(text));
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    groups.push(spans.into_iter().map(|(_, s)| s).collect());

    let first = groups.iter().flatten().next().cloned();
    for g in &groups {
        for cand in g {
            if let Some(e) = parsed(cand) {
                return (Some(e), first);
            }
        }
    }
    (None, first)
}

/// Parses a gold answer (as `\boxed{gold}`: the gold strings of the math sets are LaTeX
/// without delimiters).
pub fn parse_gold(gold: &str) -> Extracted {
    let text = normalize(gold);
    let value = parse_value(&text);
    Extracted { text, value }
}

/// Drops the base subscript of digit strings (`52_8`, `4210_{5}`).
fn strip_bases(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '_' && i > 0 && c[i - 1].is_ascii_digit() {
            let mut j = i + 1;
            if c.get(j) == Some(&'{') {
                j += 1;
                while j < c.len() && c[j] != '}' {
                    j += 1;
                }
                i = j + 1;
            } else {
                i = j + 1;
            }
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    out
}
