//! Parsing normalised LaTeX (and plain expressions) into values, in the manner of
//! latex2sympy2_extended: numbers keep their kind (integer, rational, float, percent), single
//! letters are symbols, `f(x)` of a single letter is an undefined function, relations chain
//! (`2 \le x < 3` is two relations), `(a, b)` is an open interval, `\{…\}` a set, matrices
//! are matrices. Parsing is bounded: an expression nested deeper than [`MAX_DEPTH`] is "not
//! parsed", never a stack overflow.

/// How deep an expression may nest before it is "not parsed".
pub const MAX_DEPTH: usize = 200;

/// How many terms (or factors) one sum (or product) may have before it is "not parsed"
/// (keeps every tree shallow enough to evaluate and drop without deep recursion).
const MAX_TERMS: usize = 500;

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number; `float` when it was written with a decimal point (sympy's `Float`).
    Num {
        /// Its value.
        value: f64,
        /// Written as a decimal (`2.50`), not an integer.
        float: bool,
    },
    /// A free variable (an undefined function application is a variable named by it).
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
    /// `x %`: the value over 100, remembered as a percentage.
    Pct(Box<Expr>),
}

/// A relation symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `=`
    Eq,
    /// `\neq`
    Ne,
    /// `<`
    Lt,
    /// `\le`
    Le,
    /// `>`
    Gt,
    /// `\ge`
    Ge,
}

impl RelOp {
    /// The relation read from the other side (`<` ↔ `>`).
    pub fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Gt => RelOp::Lt,
            RelOp::Le => RelOp::Ge,
            RelOp::Ge => RelOp::Le,
            other => other,
        }
    }
}

/// One relation `lhs op rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// Left side.
    pub lhs: Value,
    /// The symbol.
    pub op: RelOp,
    /// Right side.
    pub rhs: Value,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// One expression.
    Expr(Expr),
    /// Relations that all hold (`a = b`, `2 \le x < 3`).
    Rel(Vec<Relation>),
    /// An ordered tuple (only where sympy keeps one: `(a, b, c)`, tuples inside relations).
    Tuple(Vec<Value>),
    /// A finite set: `\{a, b\}`, a bare list `a, b`, answers joined by "and"/"or".
    Set(Vec<Value>),
    /// An interval; `closed` flags for the left and right ends. `(a, b)` is one.
    Interval(Box<Value>, Box<Value>, bool, bool),
    /// A union of sets.
    Union(Vec<Value>),
    /// A matrix, row by row (a sum of matrices is evaluated).
    Matrix(Vec<Vec<Value>>),
    /// The empty set.
    Empty,
}

impl Expr {
    fn num(value: f64) -> Expr {
        Expr::Num { value, float: false }
    }

    /// Evaluates with the free variables given by `vars`.
    pub fn eval(&self, vars: &dyn Fn(&str) -> f64) -> f64 {
        self.eval_depth(vars, 0)
    }

    fn eval_depth(&self, vars: &dyn Fn(&str) -> f64, d: usize) -> f64 {
        if d > 4 * MAX_TERMS {
            return f64::NAN;
        }
        let e = |x: &Expr| x.eval_depth(vars, d + 1);
        match self {
            Expr::Num { value, .. } => *value,
            Expr::Var(n) => vars(n),
            Expr::Add(a, b) => e(a) + e(b),
            Expr::Sub(a, b) => e(a) - e(b),
            Expr::Mul(a, b) => e(a) * e(b),
            Expr::Div(a, b) => e(a) / e(b),
            Expr::Pow(a, b) => {
                let (x, y) = (e(a), e(b));
                if x < 0.0 && y.fract() != 0.0 {
                    // Odd roots of negatives (cube roots) as reals.
                    let inv = 1.0 / y;
                    if (inv.round() - inv).abs() < 1e-12 && (inv.round() as i64) % 2 != 0 {
                        return -(-x).powf(y);
                    }
                }
                x.powf(y)
            }
            Expr::Neg(a) => -e(a),
            Expr::Pct(a) => e(a) / 100.0,
            Expr::Func(f, a) => {
                let x = e(a);
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
                    "sinh" => x.sinh(),
                    "cosh" => x.cosh(),
                    "tanh" => x.tanh(),
                    "ln" => x.ln(),
                    "log" => x.ln(),
                    "exp" => x.exp(),
                    "abs" => x.abs(),
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    "fact" => gamma_fact(x),
                    _ => f64::NAN,
                }
            }
        }
    }

    /// The free variables, in order of appearance.
    pub fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(n) => {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            Expr::Num { .. } => {}
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) | Expr::Pow(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Pct(a) => a.vars(out),
        }
    }

    /// The kind of number this is when sympy would hold it as an atomic `Number`.
    pub fn atomic(&self) -> Option<NumKind> {
        match self {
            Expr::Num { value, float } => Some(if *float {
                NumKind::Float
            } else if value.fract() == 0.0 {
                NumKind::Integer
            } else {
                NumKind::Rational
            }),
            Expr::Neg(a) => a.atomic(),
            // \frac{a}{b} of integers is evaluated to a Rational by latex2sympy.
            Expr::Div(a, b) => match (a.atomic()?, b.atomic()?) {
                (NumKind::Integer, NumKind::Integer) => {
                    let v = self.eval(&|_| f64::NAN);
                    Some(if v.fract() == 0.0 { NumKind::Integer } else { NumKind::Rational })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// How sympy holds an atomic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    /// `Integer`.
    Integer,
    /// `Rational` (not an integer).
    Rational,
    /// `Float`.
    Float,
}

fn gamma_fact(n: f64) -> f64 {
    if n.fract() != 0.0 || !(0.0..=170.0).contains(&n) {
        return f64::NAN;
    }
    (1..=n as u64).map(|k| k as f64).product()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64, bool),
    Ident(String),
    Text(String),
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
            let mut dot = false;
            while i < c.len() && (c[i].is_ascii_digit() || (c[i] == '.' && !dot)) {
                dot |= c[i] == '.';
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            let float = text.contains('.') && !text.ends_with('.');
            let text = text.trim_end_matches('.');
            out.push(Tok::Num(text.parse().ok()?, float));
        } else if ch == '\\' {
            let start = i + 1;
            i += 1;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                if i < c.len() {
                    match c[i] {
                        ',' | ';' | ':' | '!' | ' ' => {}
                        '(' | ')' | '[' | ']' => out.push(Tok::Op(c[i])),
                        '%' => out.push(Tok::Cmd("%".into())),
                        x => out.push(Tok::Cmd(x.to_string())),
                    }
                    i += 1;
                }
            } else {
                let name: String = c[start..i].iter().collect();
                if name == "quad" || name == "qquad" {
                    // spacing
                } else if name == "text" || name == "mbox" || name == "textnormal" {
                    // \text{…}: one symbol of the lower-cased content without spaces.
                    let mut j = i;
                    while j < c.len() && c[j].is_whitespace() {
                        j += 1;
                    }
                    if c.get(j) != Some(&'{') {
                        return None;
                    }
                    let mut depth = 0usize;
                    let mut k = j;
                    let mut body = String::new();
                    while k < c.len() {
                        match c[k] {
                            '{' => {
                                depth += 1;
                                if depth > 1 {
                                    body.push('{');
                                }
                            }
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                                body.push('}');
                            }
                            x => body.push(x),
                        }
                        k += 1;
                    }
                    if k >= c.len() {
                        return None;
                    }
                    i = k + 1;
                    let mut t: String =
                        body.chars().filter(|x| !x.is_whitespace()).flat_map(char::to_lowercase).collect();
                    if t.len() > 2 && t.starts_with('(') && t.ends_with(')') && !t[1..t.len() - 1].contains(['(', ')'])
                    {
                        t = t[1..t.len() - 1].to_string();
                    }
                    if t.is_empty() {
                        continue;
                    }
                    out.push(Tok::Text(t));
                } else {
                    out.push(Tok::Cmd(name));
                }
            }
        } else if ch.is_alphabetic() {
            // latex2sympy's symbols are lower-cased (`A` is `a`).
            out.push(Tok::Ident(ch.to_lowercase().collect()));
            i += 1;
        } else if "+-*/^()[]{},_=!|<>&;:'".contains(ch) {
            out.push(Tok::Op(ch));
            i += 1;
        } else if ch == '×' || ch == '·' {
            out.push(Tok::Op('*'));
            i += 1;
        } else if ch == '÷' {
            out.push(Tok::Op('/'));
            i += 1;
        } else if ch == '%' {
            out.push(Tok::Cmd("%".into()));
            i += 1;
        } else if ch == 'π' {
            out.push(Tok::Cmd("pi".into()));
            i += 1;
        } else if ch == '∞' {
            out.push(Tok::Cmd("infty".into()));
            i += 1;
        } else if ch == '√' {
            out.push(Tok::Cmd("sqrt".into()));
            i += 1;
        } else if ch == '≤' || ch == '≥' || ch == '≠' {
            out.push(Tok::Cmd(
                match ch {
                    '≤' => "le",
                    '≥' => "ge",
                    _ => "neq",
                }
                .into(),
            ));
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
    depth: usize,
}

const FUNCS: &[&str] = &[
    "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "ln",
    "log", "exp",
];

/// Single letters that are functions when followed by `(` holding one atom (latex2sympy reads
/// `f(2)`, `P(2)`, `I(0)` as function applications, `x(x+1)` and `a(b+1)` as products).
fn function_letter(name: &str) -> bool {
    name.chars().count() == 1 && name != "x" && name != "y" && name != "z" && name != "e"
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.t.get(self.i + k)
    }
    fn eat(&mut self, op: char) -> bool {
        if self.peek() == Some(&Tok::Op(op)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_cmd(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Cmd(c)) if c == name) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }
    fn expr(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut lhs = if self.eat('-') {
            Expr::Neg(Box::new(self.term()?))
        } else {
            self.eat('+');
            self.term()?
        };
        for _ in 0..MAX_TERMS {
            if self.eat('+') {
                lhs = Expr::Add(Box::new(lhs), Box::new(self.term()?));
            } else if self.eat('-') {
                lhs = Expr::Sub(Box::new(lhs), Box::new(self.term()?));
            } else {
                self.depth -= 1;
                return Some(lhs);
            }
        }
        None
    }
    fn term(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut lhs = self.unary()?;
        for _ in 0..MAX_TERMS {
            if self.eat('*') || self.eat_cmd("cdot") || self.eat_cmd("times") || self.eat_cmd("ast") {
                lhs = Expr::Mul(Box::new(lhs), Box::new(self.unary()?));
            } else if self.eat('/') || self.eat_cmd("div") {
                lhs = Expr::Div(Box::new(lhs), Box::new(self.unary()?));
            } else if self.starts_atom() {
                lhs = Expr::Mul(Box::new(lhs), Box::new(self.power()?));
            } else {
                self.depth -= 1;
                return Some(lhs);
            }
        }
        None
    }
    fn unary(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = if self.eat('-') {
            Some(Expr::Neg(Box::new(self.unary()?)))
        } else if self.eat('+') {
            self.unary()
        } else {
            self.power()
        };
        self.depth -= 1;
        r
    }
    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(..) | Tok::Ident(_) | Tok::Text(_)) => true,
            Some(Tok::Op('(')) => true,
            Some(Tok::Op('|')) => false,
            Some(Tok::Cmd(c)) => {
                matches!(c.as_str(), "frac" | "sqrt" | "pi" | "infty" | "binom" | "lfloor" | "lceil")
                    || FUNCS.contains(&c.as_str())
                    || greek(c)
            }
            _ => false,
        }
    }
    fn power(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut base = self.atom()?;
        for _ in 0..MAX_TERMS {
            // 90^\circ, 90^{\circ}: degrees are the number itself (convert_degrees=False).
            if self.peek() == Some(&Tok::Op('^')) && self.peek_at(1) == Some(&Tok::Cmd("circ".into())) {
                self.i += 2;
                continue;
            }
            if self.peek() == Some(&Tok::Op('^'))
                && self.peek_at(1) == Some(&Tok::Op('{'))
                && self.peek_at(2) == Some(&Tok::Cmd("circ".into()))
                && self.peek_at(3) == Some(&Tok::Op('}'))
            {
                self.i += 4;
                continue;
            }
            // 52_8, 4210_{5}: the base subscript of a digit string is dropped.
            if matches!(base, Expr::Num { .. }) && self.peek() == Some(&Tok::Op('_')) {
                self.i += 1;
                self.subscript()?;
                continue;
            }
            if self.eat('^') {
                let exp = self.group_or_atom()?;
                base = Expr::Pow(Box::new(base), Box::new(exp));
            } else if self.eat('!') {
                base = Expr::Func("fact".into(), Box::new(base));
            } else if self.eat_cmd("%") {
                base = Expr::Pct(Box::new(base));
            } else {
                break;
            }
        }
        self.depth -= 1;
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
        // A single digit: x^23 is x^2 · 3 in LaTeX.
        if let Some(Tok::Num(v, false)) = self.peek().cloned() {
            let s = format!("{v}");
            if s.len() > 1 && s.chars().all(|c| c.is_ascii_digit()) {
                let first: f64 = s[..1].parse().ok()?;
                let rest: f64 = s[1..].parse().ok()?;
                self.t[self.i] = Tok::Num(rest, false);
                return Some(Expr::num(first));
            }
        }
        self.atom()
    }
    fn subscript(&mut self) -> Option<String> {
        Some(match self.peek().cloned()? {
            Tok::Num(v, _) => {
                self.i += 1;
                format!("{v}")
            }
            Tok::Ident(s) | Tok::Text(s) => {
                self.i += 1;
                s
            }
            Tok::Op('{') => {
                self.i += 1;
                let mut s = String::new();
                let mut depth = 1;
                loop {
                    let t = self.peek()?.clone();
                    self.i += 1;
                    match t {
                        Tok::Op('{') => depth += 1,
                        Tok::Op('}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    s.push_str(&tok_text(&t));
                }
                s
            }
            Tok::Cmd(c) => {
                self.i += 1;
                c
            }
            _ => return None,
        })
    }
    fn atom(&mut self) -> Option<Expr> {
        self.enter()?;
        let r = self.atom_inner();
        self.depth -= 1;
        r
    }
    fn atom_inner(&mut self) -> Option<Expr> {
        match self.peek().cloned()? {
            Tok::Num(v, float) => {
                self.i += 1;
                // 15\frac{39}{40}: a mixed number.
                if !float
                    && self.peek() == Some(&Tok::Cmd("frac".into()))
                    && matches!(
                        (
                            self.peek_at(1),
                            self.peek_at(2),
                            self.peek_at(3),
                            self.peek_at(4),
                            self.peek_at(5),
                            self.peek_at(6)
                        ),
                        (
                            Some(Tok::Op('{')),
                            Some(Tok::Num(_, false)),
                            Some(Tok::Op('}')),
                            Some(Tok::Op('{')),
                            Some(Tok::Num(_, false)),
                            Some(Tok::Op('}'))
                        )
                    )
                {
                    let (Some(Tok::Num(n, _)), Some(Tok::Num(m, _))) =
                        (self.peek_at(2).cloned(), self.peek_at(5).cloned())
                    else {
                        return None;
                    };
                    self.i += 7;
                    return Some(Expr::Add(
                        Box::new(Expr::Num { value: v, float: false }),
                        Box::new(Expr::Div(Box::new(Expr::num(n)), Box::new(Expr::num(m)))),
                    ));
                }
                Some(Expr::Num { value: v, float })
            }
            Tok::Text(t) => {
                self.i += 1;
                Some(Expr::Var(t))
            }
            Tok::Ident(n) => {
                self.i += 1;
                let mut name = n;
                if self.eat('_') {
                    name = format!("{name}_{}", self.subscript()?);
                }
                // f(2), P(x): an undefined function of one atom is one opaque symbol.
                if function_letter(&name)
                    && self.peek() == Some(&Tok::Op('('))
                    && matches!(self.peek_at(1), Some(Tok::Num(..) | Tok::Ident(_)))
                    && self.peek_at(2) == Some(&Tok::Op(')'))
                {
                    let arg = tok_text(self.peek_at(1)?);
                    self.i += 3;
                    return Some(Expr::Var(format!("{name}({arg})")));
                }
                if name == "e" {
                    return Some(Expr::num(std::f64::consts::E));
                }
                Some(Expr::Var(name))
            }
            Tok::Op(open @ ('(' | '{' | '[' | '|')) => {
                self.i += 1;
                let e = self.expr()?;
                let close = match open {
                    '(' => ')',
                    '{' => '}',
                    '[' => ']',
                    _ => '|',
                };
                if !self.eat(close) {
                    return None;
                }
                Some(if open == '|' { Expr::Func("abs".into(), Box::new(e)) } else { e })
            }
            Tok::Cmd(c) => {
                self.i += 1;
                match c.as_str() {
                    "pi" => Some(Expr::num(std::f64::consts::PI)),
                    "infty" => Some(Expr::num(f64::INFINITY)),
                    "frac" => {
                        let a = self.group_or_atom()?;
                        let b = self.group_or_atom()?;
                        Some(Expr::Div(Box::new(a), Box::new(b)))
                    }
                    "binom" => {
                        let n = self.group_or_atom()?;
                        let k = self.group_or_atom()?;
                        let (nv, kv) = (n.eval(&|_| f64::NAN), k.eval(&|_| f64::NAN));
                        let v = gamma_fact(nv) / (gamma_fact(kv) * gamma_fact(nv - kv));
                        v.is_finite().then(|| Expr::num(v.round()))
                    }
                    "lfloor" | "lceil" => {
                        let e = self.expr()?;
                        let close = if c == "lfloor" { "rfloor" } else { "rceil" };
                        if !self.eat_cmd(close) {
                            return None;
                        }
                        Some(Expr::Func(if c == "lfloor" { "floor" } else { "ceil" }.into(), Box::new(e)))
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
                                Box::new(Expr::Div(Box::new(Expr::num(1.0)), Box::new(n))),
                            ));
                        }
                        Some(Expr::Func("sqrt".into(), Box::new(self.group_or_atom()?)))
                    }
                    f if FUNCS.contains(&f) => {
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
                        let mut e = Expr::Func(f.to_string(), Box::new(arg.clone()));
                        if let Some(b) = base {
                            e = Expr::Div(
                                Box::new(Expr::Func("ln".into(), Box::new(arg))),
                                Box::new(Expr::Func("ln".into(), Box::new(b))),
                            );
                        }
                        Some(match pow {
                            Some(p) => Expr::Pow(Box::new(e), Box::new(p)),
                            None => e,
                        })
                    }
                    "sum" | "prod" | "int" | "lim" | "iint" | "oint" => {
                        // Opaque: the operator with its limits and body, as one symbol.
                        let mut name = format!("\\{c}");
                        while self.eat('_') || self.eat('^') {
                            name.push_str(&format!("[{}]", self.subscript()?));
                        }
                        name.push_str(&format!("({})", canonical(&self.term()?)));
                        Some(Expr::Var(name))
                    }
                    g if greek(g) => {
                        let mut name = g.to_string();
                        if self.eat('_') {
                            name = format!("{name}_{}", self.subscript()?);
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

/// A text for an expression that does not depend on the order of sums and products.
fn canonical(e: &Expr) -> String {
    fn flat<'a>(e: &'a Expr, mul: bool, out: &mut Vec<&'a Expr>) {
        match e {
            Expr::Mul(a, b) if mul => {
                flat(a, mul, out);
                flat(b, mul, out);
            }
            Expr::Add(a, b) if !mul => {
                flat(a, mul, out);
                flat(b, mul, out);
            }
            other => out.push(other),
        }
    }
    match e {
        Expr::Mul(..) | Expr::Add(..) => {
            let mul = matches!(e, Expr::Mul(..));
            let mut parts = Vec::new();
            flat(e, mul, &mut parts);
            let mut texts: Vec<String> = parts.iter().map(|p| canonical(p)).collect();
            texts.sort();
            format!("{}({})", if mul { "mul" } else { "add" }, texts.join(","))
        }
        other => format!("{other:?}"),
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Num(v, _) => format!("{v}"),
        Tok::Ident(s) | Tok::Text(s) => s.clone(),
        Tok::Cmd(c) => format!("\\{c}"),
        Tok::Op(c) => c.to_string(),
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
            | "vartheta"
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
            | "iota"
            | "upsilon"
            | "Delta"
            | "Gamma"
            | "Lambda"
            | "Omega"
            | "Phi"
            | "Psi"
            | "Sigma"
            | "Theta"
            | "Pi"
            | "Xi"
            | "hbar"
            | "ell"
    )
}

/// Parses one expression (the whole string); `None` when it is not one.
pub fn parse_expr(s: &str) -> Option<Expr> {
    let t = tokenize(s)?;
    if t.is_empty() {
        return None;
    }
    let mut p = Parser { t, i: 0, depth: 0 };
    let e = p.expr()?;
    (p.i == p.t.len()).then_some(e)
}

/// Splits at a top-level separator (outside brackets and braces; `\{`/`\}` count as
/// brackets). `None` when the brackets do not balance or nest too deep.
fn split_top(s: &str, sep: &[&str]) -> Option<Vec<String>> {
    let b = s.as_bytes();
    let mut depth = 0i64;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            if i + 1 < b.len() && (b[i + 1] == b'{' || b[i + 1] == b'}') {
                depth += if b[i + 1] == b'{' { 1 } else { -1 };
                i += 2;
                continue;
            }
            if i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
                i += 2; // \, \; \! \( …: never a separator
                continue;
            }
            // A command: separators like \cup, \le are matched below before skipping it.
            if depth == 0
                && let Some(sp) =
                    sep.iter().find(|sp| sp.starts_with('\\') && s.get(i..).unwrap_or("").starts_with(**sp))
                && !s.get(i + sp.len()..).unwrap_or("").starts_with(|x: char| x.is_ascii_alphabetic())
            {
                parts.push(s[start..i].trim().to_string());
                i += sp.len();
                start = i;
                continue;
            }
            i += 1;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0
            && let Some(sp) = sep.iter().find(|sp| !sp.starts_with('\\') && s.get(i..).unwrap_or("").starts_with(**sp))
        {
            parts.push(s[start..i].trim().to_string());
            i += sp.len();
            start = i;
            continue;
        }
        if depth > MAX_DEPTH as i64 {
            return None;
        }
        i += 1;
    }
    parts.push(s[start..].trim().to_string());
    Some(parts)
}

/// Whether the bracket opening at the first character closes at the last.
fn encloses(s: &str) -> bool {
    let b = s.as_bytes();
    let mut depth = 0i64;
    for (k, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && k + 1 < b.len() {
            return false;
        }
    }
    depth == 0
}

const REL_SEPS: &[&str] =
    &["\\leq", "\\geq", "\\neq", "\\le", "\\ge", "\\ne", "\\lt", "\\gt", "<=", ">=", "!=", "=", "<", ">"];

fn rel_op(sep: &str) -> RelOp {
    match sep {
        "\\leq" | "\\le" | "<=" => RelOp::Le,
        "\\geq" | "\\ge" | ">=" => RelOp::Ge,
        "\\neq" | "\\ne" | "!=" => RelOp::Ne,
        "\\lt" | "<" => RelOp::Lt,
        "\\gt" | ">" => RelOp::Gt,
        _ => RelOp::Eq,
    }
}

/// Parses a normalised LaTeX answer; `None` when it is not mathematics this parser reads.
pub fn parse_value(s: &str) -> Option<Value> {
    let mut s = s.replace("\\(", "(").replace("\\)", ")");
    for space in ["\\qquad", "\\quad", "\\,", "\\;", "\\:", "\\!"] {
        s = s.replace(space, " ");
    }
    parse_depth(s.trim(), 0)
}

/// latex2sympy's `comma_number_regex`: `1,234,567.5` is one number.
fn comma_number(s: &str) -> Option<Expr> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let (int, dec) = match body.split_once('.') {
        Some((i, d)) if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) => (i, Some(d)),
        Some(_) => return None,
        None => (body, None),
    };
    let groups: Vec<&str> = int.split(',').collect();
    if groups.len() < 2
        || groups[0].is_empty()
        || groups[0].len() > 3
        || !groups[0].chars().all(|c| c.is_ascii_digit())
        || !groups[1..].iter().all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let text = format!("{}{}", groups.concat(), dec.map(|d| format!(".{d}")).unwrap_or_default());
    let e = Expr::Num { value: text.parse().ok()?, float: dec.is_some() };
    Some(if neg { Expr::Neg(Box::new(e)) } else { e })
}

/// Whether a top-level relation symbol occurs.
fn has_relation(s: &str) -> bool {
    split_top(s, REL_SEPS).is_some_and(|p| p.len() > 1)
}

fn parse_depth(s: &str, d: usize) -> Option<Value> {
    if s.is_empty() || d > 40 {
        return None;
    }
    // Only the whole answer is read as one comma-grouped number (`x = 1,625` is not).
    if d == 0
        && let Some(e) = comma_number(s)
    {
        return Some(Value::Expr(e));
    }
    // `a \approx b` (as latex2sympy): a relation on the left is kept (`x = 1/3 \approx 0.33`
    // is x = 1/3), anything else gives way to the right (`a + b \approx 3` is 3; `x = x`
    // evaluates to True, so `x = x \approx 104` is 104).
    if let Some(parts) = split_top(s, &["\\approx"])
        && parts.len() > 1
    {
        if let Some(Value::Rel(r)) = parse_depth(&parts[0], d + 1)
            && !r.iter().any(|x| x.lhs == x.rhs)
        {
            return Some(Value::Rel(r));
        }
        return parse_depth(parts.last()?, d + 1);
    }
    // `p=5,q=2;p=7,q=2`: `;` groups first, then lists whose every item is a relation.
    if let Some(groups) = split_top(s, &[";"])
        && groups.len() > 1
        && groups.iter().all(|g| has_relation(g))
    {
        return groups.iter().map(|g| parse_depth(g, d + 1)).collect::<Option<Vec<_>>>().map(Value::Set);
    }
    if let Some(items) = split_top(s, &[","])
        && items.len() > 1
        && items.iter().all(|g| has_relation(g))
    {
        return items.iter().map(|g| parse_depth(g, d + 1)).collect::<Option<Vec<_>>>().map(Value::Set);
    }
    // Relations (outermost): a chain of sides and symbols.
    if let Some(rel) = parse_relation(s, d)? {
        return Some(rel);
    }
    // \in: `x \in [1, 2]` is Eq(x, set) in latex2sympy.
    if let Some(parts) = split_top(s, &["\\in"])
        && parts.len() == 2
    {
        let lhs = parse_depth(&parts[0], d + 1)?;
        let rhs = parse_depth(&parts[1], d + 1)?;
        return Some(Value::Rel(vec![Relation { lhs, op: RelOp::Eq, rhs }]));
    }
    // Lists: a, b (a set) — also `;`-separated.
    for sep in [",", ";"] {
        let items = split_top(s, &[sep])?;
        if items.len() >= 2 {
            if items.iter().any(String::is_empty) {
                return None;
            }
            let mut out = Vec::new();
            for i in &items {
                push_flat(&mut out, parse_depth(i, d + 1)?);
            }
            return Some(Value::Set(out));
        }
    }
    // Ratios: `7:32` is 7/32 (latex2sympy's colon).
    if let Some(parts) = split_top(s, &[":"])
        && parts.len() == 2
        && let (Some(a), Some(b)) = (parse_expr(&parts[0]), parse_expr(&parts[1]))
        && b.eval(&|_| 1.0) != 0.0
    {
        // (a zero second part, as in a time `12:00`, is sympy's zoo: not a number)
        return Some(Value::Expr(Expr::Div(Box::new(a), Box::new(b))));
    }
    // Unions.
    let parts = split_top(s, &["\\cup"])?;
    if parts.len() > 1 {
        return parts.iter().map(|p| parse_depth(p, d + 1)).collect::<Option<Vec<_>>>().map(Value::Union);
    }
    if s == "\\emptyset" || s == "\\varnothing" || s == "\\{\\}" {
        return Some(Value::Empty);
    }
    // Matrices, and sums of matrices.
    if s.starts_with("\\begin{") {
        return parse_matrix_sum(s, d);
    }
    // Sets \{a, b\}.
    if let Some(inner) = s.strip_prefix("\\{").and_then(|x| x.strip_suffix("\\}"))
        && encloses(&s.replace("\\{", "{").replace("\\}", "}"))
    {
        let mut out = Vec::new();
        for i in split_top(inner, &[","])? {
            if i.is_empty() {
                continue;
            }
            push_flat(&mut out, parse_depth(&i, d + 1)?);
        }
        return Some(Value::Set(out));
    }
    // {a, b}: a set.
    if s.starts_with('{') && s.ends_with('}') && encloses(s) {
        let inner = &s[1..s.len() - 1];
        let items = split_top(inner, &[","])?;
        if items.len() > 1 {
            let mut out = Vec::new();
            for i in items.iter().filter(|i| !i.is_empty()) {
                push_flat(&mut out, parse_depth(i, d + 1)?);
            }
            return Some(Value::Set(out));
        }
        return parse_depth(inner, d + 1);
    }
    // [\begin{array}…\end{array}]: the matrix.
    if s.starts_with('[') && s.ends_with(']') && s[1..].trim_start().starts_with("\\begin{") && encloses(s) {
        return parse_matrix_sum(s[1..s.len() - 1].trim(), d);
    }
    // Brackets: intervals and tuples.
    let (first, last) = (s.chars().next()?, s.chars().last()?);
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && encloses(&s.replace(']', ")").replace('[', "(")) {
        let inner = &s[1..s.len() - 1];
        let mut items = split_top(inner, &[","])?;
        if items.len() == 1 {
            items = split_top(inner, &[";"])?;
        }
        if items.len() == 2 {
            let a = parse_depth(&items[0], d + 1)?;
            let b = parse_depth(&items[1], d + 1)?;
            return Some(Value::Interval(Box::new(a), Box::new(b), first == '[', last == ']'));
        }
        if items.len() > 2 && first == '(' && last == ')' {
            return items.iter().map(|i| parse_depth(i, d + 1)).collect::<Option<Vec<_>>>().map(Value::Tuple);
        }
    }
    // a \pm b: both values.
    if let Some(parts) = split_top(s, &["\\pm", "\\mp"])
        && parts.len() == 2
    {
        let a = if parts[0].is_empty() { "0" } else { &parts[0] };
        let (x, y) = (parse_expr(a)?, parse_expr(&parts[1])?);
        return Some(Value::Set(vec![
            Value::Expr(Expr::Sub(Box::new(x.clone()), Box::new(y.clone()))),
            Value::Expr(Expr::Add(Box::new(x), Box::new(y))),
        ]));
    }
    parse_expr(s).map(Value::Expr)
}

fn push_flat(out: &mut Vec<Value>, v: Value) {
    match v {
        Value::Set(inner) => out.extend(inner),
        v => out.push(v),
    }
}

/// `Some(None)`: no relation symbol at the top level; `None`: a relation that does not parse.
fn parse_relation(s: &str, d: usize) -> Option<Option<Value>> {
    // Find top-level relation symbols in order.
    let mut sides = Vec::new();
    let mut ops = Vec::new();
    let b = s.as_bytes();
    let mut depth = 0i64;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && (b[i + 1] == b'{' || b[i + 1] == b'}') {
            depth += if b[i + 1] == b'{' { 1 } else { -1 };
            i += 2;
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            let found = REL_SEPS.iter().find(|sp| {
                s.get(i..).unwrap_or("").starts_with(**sp)
                    && (!sp.starts_with('\\')
                        || !s.get(i + sp.len()..).unwrap_or("").starts_with(|x: char| x.is_ascii_alphabetic()))
            });
            if let Some(sp) = found {
                sides.push(s[start..i].trim().to_string());
                ops.push(rel_op(sp));
                i += sp.len();
                start = i;
                continue;
            }
        }
        if c == b'\\' {
            i += 1;
            if i < b.len() && !b[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    if ops.is_empty() {
        return Some(None);
    }
    sides.push(s[start..].trim().to_string());
    if sides.iter().any(String::is_empty) {
        return None;
    }
    let vals: Vec<Value> = sides.iter().map(|x| parse_depth(x, d + 1)).collect::<Option<_>>()?;
    // latex2sympy cannot relate a number-valued expression to a tuple, interval or braced
    // set (`f(1) = (2, 4)`, `f(1) = \{1, 2\}` do not parse; `k = 1, 2` does), nor chain them
    // (`x = (x, y) = (2, 4)`); a tuple of symbols on one side is an assignment and parses.
    let structured: Vec<bool> = vals
        .iter()
        .zip(&sides)
        .map(|(v, t)| match v {
            Value::Set(_) => t.starts_with("\\{"),
            Value::Expr(_) | Value::Rel(_) | Value::Matrix(_) => false,
            _ => true,
        })
        .collect();
    if structured.iter().any(|x| *x) {
        let lone_symbol = |v: &Value| matches!(v, Value::Expr(Expr::Var(n)) if !n.contains('('));
        let symbols_tuple = |v: &Value| match v {
            Value::Interval(a, b, false, false) => lone_symbol(a) && lone_symbol(b),
            Value::Tuple(items) => items.iter().all(lone_symbol),
            _ => false,
        };
        let scalars: Vec<&Value> = vals.iter().zip(&structured).filter(|(_, s)| !**s).map(|(v, _)| v).collect();
        if vals.len() > 2 && !scalars.is_empty() {
            return None;
        }
        let assignment = vals.iter().zip(&structured).any(|(v, s)| *s && symbols_tuple(v));
        if !assignment && scalars.iter().any(|v| !lone_symbol(v)) {
            return None;
        }
    }
    let rels = ops
        .iter()
        .enumerate()
        .map(|(k, op)| Relation { lhs: vals[k].clone(), op: *op, rhs: vals[k + 1].clone() })
        .collect();
    Some(Some(Value::Rel(rels)))
}

fn parse_matrix_sum(s: &str, d: usize) -> Option<Value> {
    // Split into \begin{…}…\end{…} blocks joined by + or -.
    let mut total: Option<Vec<Vec<Value>>> = None;
    let mut rest = s;
    let mut sign = 1.0;
    let mut multiply = false;
    loop {
        let rest_t = rest.trim_start();
        let env_start = rest_t.strip_prefix("\\begin{")?;
        let env_end = env_start.find('}')?;
        let env = &env_start[..env_end];
        let end_tag = format!("\\end{{{env}}}");
        let body_all = &env_start[env_end + 1..];
        let close = body_all.find(&end_tag)?;
        let mut body = &body_all[..close];
        if env == "array" {
            // Column spec {cc}.
            let b = body.trim_start().strip_prefix('{')?;
            body = &b[b.find('}')? + 1..];
        }
        let rows: Vec<Vec<Value>> = body
            .split("\\\\")
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.split('&').map(|c| parse_depth(c.trim(), d + 1)).collect::<Option<Vec<_>>>())
            .collect::<Option<_>>()?;
        let rows = if sign < 0.0 {
            rows.into_iter().map(|r| r.into_iter().map(negate).collect::<Option<Vec<_>>>()).collect::<Option<_>>()?
        } else {
            rows
        };
        total = Some(match total {
            None => rows,
            Some(t) if multiply => mul_matrices(&t, &rows)?,
            Some(t) => add_matrices(t, rows)?,
        });
        rest = body_all[close + end_tag.len()..].trim_start();
        if rest.is_empty() {
            return total.map(Value::Matrix);
        }
        multiply = false;
        if rest.starts_with("\\begin{") {
            multiply = true;
        } else if let Some(r) = rest.strip_prefix("\\cdot").or_else(|| rest.strip_prefix("\\times")) {
            multiply = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('+') {
            sign = 1.0;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('-') {
            sign = -1.0;
            rest = r;
        } else {
            return None;
        }
    }
}

fn mul_matrices(a: &[Vec<Value>], b: &[Vec<Value>]) -> Option<Vec<Vec<Value>>> {
    let inner = b.len();
    if a.iter().any(|r| r.len() != inner) || inner == 0 {
        return None;
    }
    let cols = b[0].len();
    let get = |v: &Value| match v {
        Value::Expr(e) => Some(e.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    for row in a {
        let mut r = Vec::new();
        for j in 0..cols {
            let mut acc: Option<Expr> = None;
            for (k, x) in row.iter().enumerate() {
                let term = Expr::Mul(Box::new(get(x)?), Box::new(get(b[k].get(j)?)?));
                acc = Some(match acc {
                    None => term,
                    Some(a) => Expr::Add(Box::new(a), Box::new(term)),
                });
            }
            r.push(Value::Expr(acc?));
        }
        out.push(r);
    }
    Some(out)
}

fn negate(v: Value) -> Option<Value> {
    match v {
        Value::Expr(e) => Some(Value::Expr(Expr::Neg(Box::new(e)))),
        _ => None,
    }
}

fn add_matrices(a: Vec<Vec<Value>>, b: Vec<Vec<Value>>) -> Option<Vec<Vec<Value>>> {
    if a.len() != b.len() {
        return None;
    }
    a.into_iter()
        .zip(b)
        .map(|(ra, rb)| {
            if ra.len() != rb.len() {
                return None;
            }
            ra.into_iter()
                .zip(rb)
                .map(|(x, y)| match (x, y) {
                    (Value::Expr(p), Value::Expr(q)) => Some(Value::Expr(Expr::Add(Box::new(p), Box::new(q)))),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_not_parsed_and_does_not_overflow() {
        let s = format!("{}1{}", "(".repeat(7000), ")".repeat(7000));
        assert!(parse_value(&s).is_none());
        let s = format!("{}1{}", "{".repeat(10000), "}".repeat(10000));
        assert!(parse_value(&s).is_none());
        let s = format!("{}1", "-".repeat(100_000));
        assert!(parse_value(&s).is_none());
    }

    #[test]
    fn kinds_and_structures() {
        assert_eq!(parse_expr("2.50").and_then(|e| e.atomic()), Some(NumKind::Float));
        assert_eq!(parse_expr("\\frac{4}{2}").and_then(|e| e.atomic()), Some(NumKind::Integer));
        assert_eq!(parse_expr("-\\frac{3}{4}").and_then(|e| e.atomic()), Some(NumKind::Rational));
        assert!(matches!(parse_value("(1,2)"), Some(Value::Interval(_, _, false, false))));
        assert!(matches!(parse_value("2 \\le x < 3"), Some(Value::Rel(r)) if r.len() == 2));
        assert!(matches!(parse_value("\\{1,2\\}"), Some(Value::Set(s)) if s.len() == 2));
        assert!(matches!(parse_value("I(0)"), Some(Value::Expr(Expr::Var(v))) if v == "i(0)"));
    }
}

/// Numbers as sympy prints them: integers without a point, others in the shortest form.
fn fmt_num(value: f64, float: bool) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "oo".into() } else { "-oo".into() };
    }
    if !float && value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    if (value - std::f64::consts::PI).abs() < 1e-15 {
        return "pi".into();
    }
    if (value - std::f64::consts::E).abs() < 1e-15 {
        return "E".into();
    }
    format!("{value}")
}

impl std::fmt::Display for Expr {
    /// A sympy-like text (`x**2 + 1`, `sqrt(2)/2`, `f(3)`), for `--explain`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn prec(e: &Expr) -> u8 {
            match e {
                Expr::Add(..) | Expr::Sub(..) => 1,
                Expr::Mul(..) | Expr::Div(..) | Expr::Neg(_) => 2,
                Expr::Pow(..) => 3,
                _ => 4,
            }
        }
        fn wrap(e: &Expr, min: u8) -> String {
            if prec(e) < min { format!("({e})") } else { e.to_string() }
        }
        match self {
            Expr::Num { value, float } => write!(f, "{}", fmt_num(*value, *float)),
            Expr::Var(n) => write!(f, "{n}"),
            Expr::Add(a, b) => write!(f, "{a} + {}", wrap(b, 2)),
            Expr::Sub(a, b) => write!(f, "{a} - {}", wrap(b, 2)),
            Expr::Mul(a, b) => write!(f, "{}*{}", wrap(a, 2), wrap(b, 3)),
            Expr::Div(a, b) => write!(f, "{}/{}", wrap(a, 2), wrap(b, 3)),
            Expr::Pow(a, b) => write!(f, "{}**{}", wrap(a, 4), wrap(b, 4)),
            Expr::Neg(a) => write!(f, "-{}", wrap(a, 2)),
            Expr::Func(n, a) => {
                if n == "fact" {
                    write!(f, "{}!", wrap(a, 4))
                } else {
                    write!(f, "{n}({a})")
                }
            }
            Expr::Pct(a) => write!(f, "{}%", wrap(a, 4)),
        }
    }
}

impl std::fmt::Display for RelOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RelOp::Eq => "=",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Le => "<=",
            RelOp::Gt => ">",
            RelOp::Ge => ">=",
        })
    }
}

impl std::fmt::Display for Value {
    /// A sympy-like text of the value (`{1, 2}`, `Interval(0, 1, closed, open)`, `x = 5`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |items: &[Value]| items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Value::Expr(e) => write!(f, "{e}"),
            Value::Rel(rels) => {
                let parts: Vec<String> = rels.iter().map(|r| format!("{} {} {}", r.lhs, r.op, r.rhs)).collect();
                write!(f, "{}", parts.join(" and "))
            }
            Value::Tuple(items) => write!(f, "({})", join(items)),
            Value::Set(items) => write!(f, "{{{}}}", join(items)),
            Value::Interval(a, b, l, r) => {
                write!(f, "{}{a}, {b}{}", if *l { "[" } else { "(" }, if *r { "]" } else { ")" })
            }
            Value::Union(items) => {
                write!(f, "{}", items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" U "))
            }
            Value::Matrix(rows) => {
                let rows: Vec<String> = rows.iter().map(|r| format!("[{}]", join(r))).collect();
                write!(f, "Matrix([{}])", rows.join(", "))
            }
            Value::Empty => write!(f, "EmptySet"),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn values_print_as_sympy_would() {
        let show = |s: &str| parse_value(s).map(|v| v.to_string()).unwrap_or_default();
        assert_eq!(show("x^2+1"), "x**2 + 1");
        assert_eq!(show("\\frac{\\sqrt{2}}{2}"), "sqrt(2)/2");
        assert_eq!(show("[0,1)"), "[0, 1)");
        assert_eq!(show("\\{1,2\\}"), "{1, 2}");
        assert_eq!(show("x \\ge 2"), "x >= 2");
        assert_eq!(show("2(x+1)"), "2*(x + 1)");
        assert_eq!(show("-\\frac{3}{4}"), "-3/4");
        assert_eq!(show("2.50"), "2.5");
    }
}
