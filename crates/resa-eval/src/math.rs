//! Parsing normalised LaTeX / plain math into values, and deciding equivalence
//! numerically (expressions are evaluated; free variables at fixed sample points).

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f64),
    /// A free variable.
    Var(String),
    /// Sum.
    Add(Box<Expr>, Box<Expr>),
    /// Difference.
    Sub(Box<Expr>, Box<Expr>),
    /// Product.
    Mul(Box<Expr>, Box<Expr>),
    /// Quotient.
    Div(Box<Expr>, Box<Expr>),
    /// Power.
    Pow(Box<Expr>, Box<Expr>),
    /// Negation.
    Neg(Box<Expr>),
    /// A named function of one argument (`sqrt`, `sin`, `ln`, …).
    Func(String, Box<Expr>),
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// One expression.
    Expr(Expr),
    /// An ordered tuple `(a, b)` or a matrix row list.
    Tuple(Vec<Value>),
    /// An unordered collection: `\{a, b\}` or a bare list `a, b`.
    Set(Vec<Value>),
    /// An interval with open/closed ends.
    Interval(Box<Value>, Box<Value>, bool, bool),
    /// Text that is not mathematics (compared after normalisation).
    Text(String),
}

impl Expr {
    fn eval(&self, vars: &dyn Fn(&str) -> f64) -> f64 {
        match self {
            Expr::Num(v) => *v,
            Expr::Var(n) => vars(n),
            Expr::Add(a, b) => a.eval(vars) + b.eval(vars),
            Expr::Sub(a, b) => a.eval(vars) - b.eval(vars),
            Expr::Mul(a, b) => a.eval(vars) * b.eval(vars),
            Expr::Div(a, b) => a.eval(vars) / b.eval(vars),
            Expr::Pow(a, b) => a.eval(vars).powf(b.eval(vars)),
            Expr::Neg(a) => -a.eval(vars),
            Expr::Func(f, a) => {
                let x = a.eval(vars);
                match f.as_str() {
                    "sqrt" => x.sqrt(),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "tan" => x.tan(),
                    "cot" => 1.0 / x.tan(),
                    "sec" => 1.0 / x.cos(),
                    "csc" => 1.0 / x.sin(),
                    "arcsin" => x.asin(),
                    "arccos" => x.acos(),
                    "arctan" => x.atan(),
                    "ln" => x.ln(),
                    "log" => x.log10(),
                    "exp" => x.exp(),
                    _ => f64::NAN,
                }
            }
        }
    }

    fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(n) => {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            Expr::Num(_) => {}
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) | Expr::Pow(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Neg(a) | Expr::Func(_, a) => a.vars(out),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    let scale = a.abs().max(b.abs());
    a == b || (a - b).abs() <= 1e-6 * scale
}

/// Whether two expressions agree: as numbers, or, with free variables, at several points.
pub fn expr_equal(a: &Expr, b: &Expr) -> bool {
    let mut names = Vec::new();
    a.vars(&mut names);
    b.vars(&mut names);
    if names.is_empty() {
        return close(a.eval(&|_| f64::NAN), b.eval(&|_| f64::NAN));
    }
    let points = [[0.713, 1.37, 2.11, 0.29], [1.91, 0.47, 3.3, 2.7], [2.53, 1.09, 0.61, 1.44]];
    points.iter().all(|p| {
        let f = |n: &str| names.iter().position(|m| m == n).map_or(f64::NAN, |i| p[i % p.len()] + i as f64 * 0.173);
        let (x, y) = (a.eval(&f), b.eval(&f));
        (x.is_nan() && y.is_nan()) || close(x, y)
    })
}

/// Whether two parsed answers are equivalent.
pub fn value_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Expr(x), Value::Expr(y)) => expr_equal(x, y),
        (Value::Tuple(x), Value::Tuple(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_equal(p, q)),
        (Value::Set(x), Value::Set(y)) | (Value::Set(x), Value::Tuple(y)) | (Value::Tuple(x), Value::Set(y)) => {
            x.len() == y.len()
                && x.iter().all(|p| y.iter().any(|q| value_equal(p, q)))
                && y.iter().all(|q| x.iter().any(|p| value_equal(p, q)))
        }
        (Value::Interval(a1, b1, c1, d1), Value::Interval(a2, b2, c2, d2)) => {
            c1 == c2 && d1 == d2 && value_equal(a1, a2) && value_equal(b1, b2)
        }
        (Value::Interval(a1, b1, false, false), Value::Tuple(t))
        | (Value::Tuple(t), Value::Interval(a1, b1, false, false)) => {
            t.len() == 2 && value_equal(a1, &t[0]) && value_equal(b1, &t[1])
        }
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Set(x), Value::Expr(_)) if x.len() == 1 => value_equal(&x[0], b),
        (Value::Expr(_), Value::Set(y)) if y.len() == 1 => value_equal(a, &y[0]),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Cmd(String),
    Op(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            // Scientific notation: 3.83e35, 1e-5.
            if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
                let mut j = i + 1;
                if j < c.len() && (c[j] == '-' || c[j] == '+') {
                    j += 1;
                }
                if j < c.len() && c[j].is_ascii_digit() {
                    while j < c.len() && c[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text: String = c[start..i].iter().collect();
            let text = text.trim_end_matches('.');
            out.push(Tok::Num(text.parse().ok()?));
        } else if ch == '\\' {
            let start = i + 1;
            i += 1;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // \{ \} \, etc.
                if i < c.len() {
                    out.push(Tok::Cmd(c[i].to_string()));
                    i += 1;
                }
            } else {
                out.push(Tok::Cmd(c[start..i].iter().collect()));
            }
        } else if ch.is_alphabetic() {
            // Three letters in a row are a word, not a product of variables.
            if c.get(i + 1).is_some_and(|x| x.is_alphabetic()) && c.get(i + 2).is_some_and(|x| x.is_alphabetic()) {
                return None;
            }
            out.push(Tok::Ident(ch.to_string()));
            i += 1;
        } else if "+-*/^()[]{},_=!|<>".contains(ch) {
            out.push(Tok::Op(ch));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    t: Vec<Tok>,
    i: usize,
}

const FUNCS: [&str; 13] =
    ["sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "ln", "log", "exp"];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn eat(&mut self, op: char) -> bool {
        if self.peek() == Some(&Tok::Op(op)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Option<Expr> {
        let mut lhs = if self.eat('-') {
            Expr::Neg(Box::new(self.term()?))
        } else {
            self.eat('+');
            self.term()?
        };
        loop {
            if self.eat('+') {
                lhs = Expr::Add(Box::new(lhs), Box::new(self.term()?));
            } else if self.eat('-') {
                lhs = Expr::Sub(Box::new(lhs), Box::new(self.term()?));
            } else if matches!(self.peek(), Some(Tok::Cmd(c)) if c == "pm" || c == "mp") {
                return None;
            } else {
                return Some(lhs);
            }
        }
    }
    fn term(&mut self) -> Option<Expr> {
        let mut lhs = self.unary()?;
        loop {
            if self.eat('*') || self.eat_cmd("cdot") || self.eat_cmd("times") {
                lhs = Expr::Mul(Box::new(lhs), Box::new(self.unary()?));
            } else if self.eat('/') || self.eat_cmd("div") {
                lhs = Expr::Div(Box::new(lhs), Box::new(self.unary()?));
            } else if self.starts_atom() {
                // Implicit multiplication: 2\pi, 3x, 2\sqrt{3}, (a)(b).
                lhs = Expr::Mul(Box::new(lhs), Box::new(self.power()?));
            } else {
                return Some(lhs);
            }
        }
    }
    fn unary(&mut self) -> Option<Expr> {
        if self.eat('-') {
            return Some(Expr::Neg(Box::new(self.unary()?)));
        }
        self.power()
    }
    fn eat_cmd(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Cmd(c)) if c == name) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_) | Tok::Ident(_)) => true,
            Some(Tok::Op('(')) => true,
            Some(Tok::Cmd(c)) => {
                matches!(c.as_str(), "frac" | "sqrt" | "pi" | "infty") || FUNCS.contains(&c.as_str()) || greek(c)
            }
            _ => false,
        }
    }
    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if self.eat('^') {
            let exp = self.group_or_atom()?;
            return Some(Expr::Pow(Box::new(base), Box::new(exp)));
        }
        if self.eat('!') {
            // Factorial of a small integer.
            let n = base.eval(&|_| f64::NAN);
            if n.fract() != 0.0 || !(0.0..=170.0).contains(&n) {
                return None;
            }
            return Some(Expr::Num((1..=n as u64).map(|k| k as f64).product()));
        }
        Some(base)
    }
    fn group_or_atom(&mut self) -> Option<Expr> {
        if self.eat('{') {
            let e = self.expr()?;
            if !self.eat('}') {
                return None;
            }
            return Some(e);
        }
        if self.eat('-') {
            return Some(Expr::Neg(Box::new(self.atom()?)));
        }
        // A single digit or symbol: x^23 means x^2 · 3 in LaTeX.
        if let Some(Tok::Num(v)) = self.peek().cloned() {
            let s = format!("{v}");
            if s.len() > 1 && !s.contains('.') {
                let first: f64 = s[..1].parse().ok()?;
                let rest: f64 = s[1..].parse().ok()?;
                self.t[self.i] = Tok::Num(rest);
                return Some(Expr::Num(first));
            }
        }
        self.atom()
    }
    fn atom(&mut self) -> Option<Expr> {
        match self.peek().cloned()? {
            Tok::Num(v) => {
                self.i += 1;
                Some(Expr::Num(v))
            }
            Tok::Ident(n) => {
                self.i += 1;
                let mut name = n;
                if self.eat('_') {
                    let sub = match self.peek().cloned()? {
                        Tok::Num(v) => format!("{v}"),
                        Tok::Ident(s) => s,
                        Tok::Op('{') => {
                            self.i += 1;
                            let mut s = String::new();
                            while !self.eat('}') {
                                s.push_str(&format!("{:?}", self.peek()?));
                                self.i += 1;
                            }
                            s
                        }
                        _ => return None,
                    };
                    if !matches!(self.t.get(self.i.wrapping_sub(1)), Some(Tok::Op('}'))) {
                        self.i += 1;
                    }
                    name = format!("{name}_{sub}");
                }
                if name == "e" {
                    return Some(Expr::Num(std::f64::consts::E));
                }
                Some(Expr::Var(name))
            }
            Tok::Op('(') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat(')') {
                    return None;
                }
                Some(e)
            }
            Tok::Op('{') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat('}') {
                    return None;
                }
                Some(e)
            }
            Tok::Op('[') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat(']') {
                    return None;
                }
                Some(e)
            }
            Tok::Cmd(c) => {
                self.i += 1;
                match c.as_str() {
                    "pi" => Some(Expr::Num(std::f64::consts::PI)),
                    "infty" => Some(Expr::Num(f64::INFINITY)),
                    "frac" => {
                        let a = self.group_or_atom()?;
                        let b = self.group_or_atom()?;
                        Some(Expr::Div(Box::new(a), Box::new(b)))
                    }
                    "sqrt" => {
                        if self.eat('[') {
                            let n = self.expr()?;
                            if !self.eat(']') {
                                return None;
                            }
                            let x = self.group_or_atom()?;
                            return Some(Expr::Pow(
                                Box::new(x),
                                Box::new(Expr::Div(Box::new(Expr::Num(1.0)), Box::new(n))),
                            ));
                        }
                        Some(Expr::Func("sqrt".into(), Box::new(self.group_or_atom()?)))
                    }
                    f if FUNCS.contains(&f) => {
                        // \sin^2 x, \log_2 8.
                        let mut pow = None;
                        if self.eat('^') {
                            pow = Some(self.group_or_atom()?);
                        }
                        let mut base = None;
                        if f == "log" && self.eat('_') {
                            base = Some(self.group_or_atom()?);
                        }
                        let arg = if self.peek() == Some(&Tok::Op('(')) || self.peek() == Some(&Tok::Op('{')) {
                            self.atom()?
                        } else {
                            self.power()?
                        };
                        let mut e = Expr::Func(f.to_string(), Box::new(arg));
                        if let Some(b) = base {
                            e = Expr::Div(
                                Box::new(Expr::Func(
                                    "ln".into(),
                                    Box::new(match e {
                                        Expr::Func(_, a) => *a,
                                        other => other,
                                    }),
                                )),
                                Box::new(Expr::Func("ln".into(), Box::new(b))),
                            );
                        }
                        Some(match pow {
                            Some(p) => Expr::Pow(Box::new(e), Box::new(p)),
                            None => e,
                        })
                    }
                    g if greek(g) => {
                        let mut name = g.to_string();
                        if self.eat('_') {
                            let sub = self.group_or_atom()?;
                            name = format!("{name}_{sub:?}");
                        }
                        Some(Expr::Var(name))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn greek(c: &str) -> bool {
    matches!(
        c,
        "alpha"
            | "beta"
            | "gamma"
            | "delta"
            | "theta"
            | "lambda"
            | "mu"
            | "sigma"
            | "phi"
            | "omega"
            | "rho"
            | "tau"
            | "epsilon"
            | "varepsilon"
            | "eta"
            | "nu"
            | "psi"
            | "chi"
            | "kappa"
            | "zeta"
            | "xi"
            | "varphi"
            | "Delta"
            | "Gamma"
            | "Lambda"
            | "Omega"
            | "Phi"
            | "Psi"
            | "Sigma"
            | "Theta"
            | "hbar"
            | "odot"
            | "ell"
    )
}

/// Parses one expression (the whole string).
pub fn parse_expr(s: &str) -> Option<Expr> {
    let t = tokenize(s)?;
    if t.is_empty() {
        return None;
    }
    let mut p = Parser { t, i: 0 };
    let e = p.expr()?;
    (p.i == p.t.len()).then_some(e)
}

/// Splits at top-level commas (outside brackets and braces).
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut depth = 0i32;
    let mut parts = vec![String::new()];
    let mut prev = ' ';
    for ch in s.chars() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if ch == sep && depth == 0 && prev != '\\' {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(ch);
        }
        prev = ch;
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

fn matching_close(s: &str) -> bool {
    // The first character's bracket closes at the very end.
    let mut depth = 0i32;
    let n = s.chars().count();
    for (k, ch) in s.chars().enumerate() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && k + 1 < n {
            return false;
        }
    }
    depth == 0
}

/// Parses an answer: intervals, tuples, sets, matrices, lists, equations (right side),
/// expressions; otherwise text.
pub fn parse_value(s: &str) -> Value {
    let s = s.trim();
    if let Some(v) = parse_structured(s) {
        return v;
    }
    Value::Text(s.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect())
}

fn parse_structured(s: &str) -> Option<Value> {
    if s.is_empty() {
        return None;
    }
    // Matrices: \begin{pmatrix} a & b \\ c & d \end{pmatrix}.
    if let Some(inner) = s.strip_prefix("\\begin{pmatrix}").or_else(|| s.strip_prefix("\\begin{bmatrix}")) {
        let inner = inner.trim_end_matches("\\end{pmatrix}").trim_end_matches("\\end{bmatrix}");
        let rows: Vec<Value> = inner
            .split("\\\\")
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.split('&').map(|c| parse_structured(c.trim())).collect::<Option<Vec<_>>>().map(Value::Tuple))
            .collect::<Option<_>>()?;
        return Some(Value::Tuple(rows));
    }
    // Sets \{a, b\} (normalised to {a,b} by the caller? keep both).
    if let Some(inner) = s.strip_prefix("\\{").and_then(|x| x.strip_suffix("\\}")) {
        let items = split_top(inner, ',');
        let mut flat = Vec::new();
        for i in items {
            match parse_structured(&i)? {
                Value::Set(inner) => flat.extend(inner),
                v => flat.push(v),
            }
        }
        return Some(Value::Set(flat));
    }
    let first = s.chars().next()?;
    let last = s.chars().last()?;
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && matching_close_any(s) {
        let inner = &s[1..s.len() - 1];
        let items = split_top(inner, ',');
        if items.len() == 2 && (first != '(' || last != ')') {
            let a = parse_structured(&items[0])?;
            let b = parse_structured(&items[1])?;
            return Some(Value::Interval(Box::new(a), Box::new(b), first == '[', last == ']'));
        }
        if items.len() >= 2 && first == '(' && last == ')' {
            return items.iter().map(|i| parse_structured(i)).collect::<Option<Vec<_>>>().map(Value::Tuple);
        }
    }
    let items = split_top(s, ',');
    if items.len() >= 2 {
        return items.iter().map(|i| parse_structured(i)).collect::<Option<Vec<_>>>().map(Value::Set);
    }
    // Unions of intervals.
    let parts: Vec<&str> = s.split("\\cup").collect();
    if parts.len() > 1 {
        return parts.iter().map(|p| parse_structured(p.trim())).collect::<Option<Vec<_>>>().map(Value::Set);
    }
    // a \pm b: both values.
    if let Some((a, b)) = s.split_once("\\pm") {
        let a = if a.trim().is_empty() { "0" } else { a.trim() };
        let (x, y) = (parse_expr(a)?, parse_expr(b.trim())?);
        return Some(Value::Set(vec![
            Value::Expr(Expr::Add(Box::new(x.clone()), Box::new(y.clone()))),
            Value::Expr(Expr::Sub(Box::new(x), Box::new(y))),
        ]));
    }
    // Equations: keep the right-hand side (x = 5, y = 2x + 1).
    let eq = split_top(s, '=');
    if eq.len() == 2 {
        let lhs = eq[0].trim();
        let simple = parse_expr(lhs).is_some_and(|e| matches!(e, Expr::Var(_)));
        if simple {
            return parse_structured(&eq[1]);
        }
        let (a, b) = (parse_expr(lhs)?, parse_expr(eq[1].trim())?);
        return Some(Value::Expr(Expr::Sub(Box::new(a), Box::new(b))));
    }
    if eq.len() > 2 {
        return None;
    }
    parse_expr(s).map(Value::Expr)
}

fn matching_close_any(s: &str) -> bool {
    // Intervals may mix brackets: [a, b) — check balance ignoring kinds.
    let t: String = s
        .chars()
        .map(|c| {
            if c == ']' {
                ')'
            } else if c == '[' {
                '('
            } else {
                c
            }
        })
        .collect();
    matching_close(&t)
}
