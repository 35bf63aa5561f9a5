//! Deciding whether a predicted answer equals a gold one, ported from math-verify 0.9
//! (`grader.py`: `verify`, `sympy_expr_eq` and the comparisons it dispatches to), over this
//! crate's values instead of sympy's.
//!
//! The structure is math-verify's, step by step: assignments (`x = 5`, `(p, q) = (3, 2)`)
//! reduce to their right-hand side against a non-equation; a predicted equation against a
//! non-equation gold reduces to its last right-hand side; a relation against a set becomes
//! a set; then relations, sets/tuples/intervals, symbols and numbers are compared as there.
//! Where math-verify calls sympy (`simplify(a - b) == 0`, `solve`), this module evaluates:
//! numbers exactly where sympy keeps them exact (integers, rationals; relative 1e-12),
//! floats rounded to `float_rounding` decimals as sympy's `round`, and expressions with free
//! variables at eight points away from zero. Undefined function applications (`f(3)`,
//! `I(0)`) are opaque symbols, never products, so an expression cannot vanish by accident.

use crate::extract::Extracted;
use crate::math::{Expr, NumKind, RelOp, Relation, Value};

/// Whether any gold candidate equals any predicted one (math-verify's `verify` with
/// `float_rounding`); the pair that matched.
pub fn verify(gold: &[Extracted], pred: &[Extracted], float_rounding: u32) -> Option<(usize, usize)> {
    for (i, g) in gold.iter().enumerate() {
        for (j, p) in pred.iter().enumerate() {
            let eq = match (g, p) {
                (Extracted::Value { value: a, .. }, Extracted::Value { value: b, .. }) => expr_eq(a, b, float_rounding),
                (Extracted::Text(a), Extracted::Text(b)) => {
                    let (a, b) = (a.trim(), b.trim());
                    !a.is_empty() && a == b
                }
                _ => false,
            };
            if eq {
                return Some((i, j));
            }
        }
    }
    None
}

fn is_only_symbols(v: &Value) -> bool {
    match v {
        Value::Expr(e) => expr_only_symbols(e),
        Value::Tuple(items) => items.iter().all(is_only_symbols),
        // `(p, q)` is read as an interval; on the left of `=` it is sympy's tuple.
        Value::Interval(a, b, false, false) => is_only_symbols(a) && is_only_symbols(b),
        _ => false,
    }
}

fn expr_only_symbols(e: &Expr) -> bool {
    match e {
        Expr::Var(n) => match n.split_once('(') {
            // f(x) has only symbols, f(2) a number.
            Some((_, arg)) => arg.trim_end_matches(')').chars().all(char::is_alphabetic),
            None => true,
        },
        Expr::Add(a, b) | Expr::Mul(a, b) => expr_only_symbols(a) && expr_only_symbols(b),
        Expr::Div(a, b) => expr_only_symbols(a) && expr_only_symbols(b),
        // |AB|, sqrt(x): a function of symbols only.
        Expr::Func(_, a) => expr_only_symbols(a),
        _ => false,
    }
}

fn is_relation(v: &Value) -> bool {
    matches!(v, Value::Rel(r) if !r.is_empty())
}

fn is_equation(v: &Value) -> bool {
    matches!(v, Value::Rel(r) if !r.is_empty() && r.iter().all(|x| x.op == RelOp::Eq))
}

fn is_assignment(v: &Value) -> bool {
    is_equation(v) && matches!(v, Value::Rel(r) if is_only_symbols(&r[0].lhs))
}

fn is_set(v: &Value) -> bool {
    matches!(v, Value::Set(_) | Value::Interval(..) | Value::Union(_) | Value::Empty)
}

/// math-verify's `sympy_expr_eq` (strict, no set–relation comparison unless the prediction
/// is a set).
pub fn expr_eq(gold: &Value, pred: &Value, fr: u32) -> bool {
    let (mut gold, mut pred) = (gold.clone(), pred.clone());
    let (ga, pa) = (is_assignment(&gold), is_assignment(&pred));
    let (ge, pe) = (is_equation(&gold), is_equation(&pred));
    let collapse = |v: &Value| match v {
        Value::Rel(r) => {
            Value::Rel(vec![Relation { lhs: r[0].lhs.clone(), op: RelOp::Eq, rhs: r[r.len() - 1].rhs.clone() }])
        }
        other => other.clone(),
    };
    let last_rhs = |v: &Value| match v {
        Value::Rel(r) => r[r.len() - 1].rhs.clone(),
        other => other.clone(),
    };
    if ga {
        gold = collapse(&gold);
    }
    if pa {
        pred = collapse(&pred);
    }
    if pe && !ge {
        pred = last_rhs(&pred);
    } else if ga && !pe {
        gold = last_rhs(&gold);
    }
    if is_relation(&gold)
        && is_set(&pred)
        && let Some(s) = relation_as_set(&gold)
    {
        gold = s;
    }
    if structural_eq(&gold, &pred) {
        return true;
    }
    if is_relation(&gold) && is_relation(&pred) {
        return compare_relational(&gold, &pred, fr);
    }
    if is_set(&gold) || is_set(&pred) || matches!(gold, Value::Tuple(_)) || matches!(pred, Value::Tuple(_)) {
        return compare_sets(&gold, &pred, fr);
    }
    if let (Value::Expr(g), Value::Expr(p)) = (&gold, &pred) {
        if matches!(g, Expr::Var(_)) || matches!(p, Expr::Var(_)) {
            return compare_symbols(g, p);
        }
        return numeric_eq(g, p, fr) || symbolic_eq(g, p);
    }
    if let (Value::Matrix(a), Value::Matrix(b)) = (&gold, &pred) {
        return a.len() == b.len()
            && a.iter().zip(b).all(|(ra, rb)| {
                ra.len() == rb.len()
                    && ra.iter().zip(rb).all(|(x, y)| match (x, y) {
                        (Value::Expr(p), Value::Expr(q)) => numeric_eq(p, q, fr) || symbolic_eq(p, q),
                        _ => expr_eq(x, y, fr),
                    })
            });
    }
    false
}

fn structural_eq(a: &Value, b: &Value) -> bool {
    // sympy's `==` after evaluation; the parse trees stand in for it (numbers compare by value).
    a == b
}

fn strip_pct(e: &Expr) -> (&Expr, bool) {
    match e {
        Expr::Pct(inner) => (inner, true),
        other => (other, false),
    }
}

/// The atomic kind of an expression or of the number under its percent sign.
fn atomic_or_pct(e: &Expr) -> Option<NumKind> {
    strip_pct(e).0.atomic()
}

fn constant(e: &Expr) -> Option<f64> {
    let mut names = Vec::new();
    e.vars(&mut names);
    names.is_empty().then(|| e.eval(&|_| f64::NAN))
}

fn exact_eq(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    a.is_finite() && b.is_finite() && (a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs()))
}

fn round_to(x: f64, digits: u32) -> f64 {
    let s = 10f64.powi(digits as i32);
    if x.abs() * s > 1e15 {
        return x; // past f64's exact range: compared at full precision
    }
    (x * s).round() / s
}

/// math-verify's `sympy_numeric_eq` for expressions.
fn numeric_eq(a: &Expr, b: &Expr, fr: u32) -> bool {
    let (ka, kb) = (atomic_or_pct(a), atomic_or_pct(b));
    if ka.is_some() || kb.is_some() {
        if ka == Some(NumKind::Float) || kb == Some(NumKind::Float) {
            // Rounded comparison, unless a side is an integer (sympy's Integer.round keeps
            // an Integer, which never equals a Float: the exact comparison decides then).
            let int_a = ka == Some(NumKind::Integer) && !matches!(a, Expr::Pct(_));
            let int_b = kb == Some(NumKind::Integer) && !matches!(b, Expr::Pct(_));
            let (Some(x), Some(y)) = (constant(a), constant(b)) else { return false };
            if int_a || int_b {
                return exact_eq(x, y);
            }
            // sympy's round of `x·UnevaluatedExpr(1/100)` rounds x: the percent sign is not
            // applied here (the exact comparison afterwards applies it: 0.04 = 4%).
            let (Some(x), Some(y)) = (constant(strip_pct(a).0), constant(strip_pct(b).0)) else { return false };
            let (rx, ry) = (round_to(x, fr), round_to(y, fr));
            let rounded = if rx.abs() * 10f64.powi(fr as i32) > 1e15 { exact_eq(rx, ry) } else { rx == ry };
            return rounded || matches!((constant(a), constant(b)), (Some(p), Some(q)) if exact_eq(p, q));
        }
        if ka == Some(NumKind::Integer) && kb == Some(NumKind::Integer) {
            // Percent of an integer against an integer: the numbers themselves.
            let (Some(x), Some(y)) = (constant(strip_pct(a).0), constant(strip_pct(b).0)) else { return false };
            return x == y;
        }
        return match (constant(a), constant(b)) {
            (Some(x), Some(y)) => exact_eq(x, y),
            _ => false,
        };
    }
    match (constant(a), constant(b)) {
        (Some(x), Some(y)) => exact_eq(x, y) || (x - y).abs() < 1e-13,
        _ => false,
    }
}

/// Sample points: away from zero and from small integers, distinct per variable.
const POINTS: [f64; 8] = [0.7137, 1.3719, 2.1138, 0.2917, 1.9123, 0.4771, 3.3049, 2.7181];

/// `simplify(a - b) == 0`, decided by evaluation at several points.
fn symbolic_eq(a: &Expr, b: &Expr) -> bool {
    let mut names = Vec::new();
    a.vars(&mut names);
    b.vars(&mut names);
    if names.is_empty() {
        return match (constant(a), constant(b)) {
            (Some(x), Some(y)) => exact_eq(x, y) || (x - y).abs() < 1e-13,
            _ => false,
        };
    }
    let mut finite = 0;
    for k in 0..POINTS.len() {
        let f = |n: &str| {
            names
                .iter()
                .position(|m| m == n)
                .map_or(f64::NAN, |i| POINTS[(k + 3 * i) % POINTS.len()] + 0.1031 * i as f64)
        };
        let (x, y) = (a.eval(&f), b.eval(&f));
        if x.is_nan() && y.is_nan() {
            continue;
        }
        if !(x.is_finite() && y.is_finite()) {
            if x != y {
                return false;
            }
            continue;
        }
        if (x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1.0) {
            return false;
        }
        finite += 1;
    }
    finite >= 4
}

fn var_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Var(n) => Some(n),
        _ => None,
    }
}

/// Factors of a product of symbols and `e` (`LCs` = l·c·s), or `None`.
fn symbol_product(e: &Expr, out: &mut String) -> bool {
    match e {
        Expr::Var(n) => {
            out.push_str(n);
            true
        }
        Expr::Num { value, .. } if *value == std::f64::consts::E => {
            out.push('e');
            true
        }
        Expr::Mul(a, b) => symbol_product(a, out) && symbol_product(b, out),
        _ => false,
    }
}

/// math-verify's `sympy_compare_symbols`.
fn compare_symbols(g: &Expr, p: &Expr) -> bool {
    let is_e = |e: &Expr| matches!(e, Expr::Num { value, .. } if *value == std::f64::consts::E);
    if (var_name(g).is_some_and(|n| n.eq_ignore_ascii_case("e")) && is_e(p))
        || (var_name(p).is_some_and(|n| n.eq_ignore_ascii_case("e")) && is_e(g))
    {
        return true;
    }
    if let (Some(gn), Expr::Mul(..)) = (var_name(g), p) {
        let mut s = String::new();
        if symbol_product(p, &mut s) {
            return gn.to_lowercase() == s.to_lowercase();
        }
    }
    if let (Expr::Mul(..), Some(pn)) = (g, var_name(p)) {
        let mut s = String::new();
        if symbol_product(g, &mut s) {
            return pn.to_lowercase() == s.to_lowercase();
        }
    }
    if let (Some(gn), Some(pn)) = (var_name(g), var_name(p)) {
        let norm = |n: &str| if n.chars().count() > 1 { n.to_lowercase() } else { n.to_string() };
        return norm(gn) == norm(pn);
    }
    // str(gold) == str(pred): the same expression tree, or a symbol spelled as the number.
    let number_text = |e: &Expr| match e {
        Expr::Num { value, float: false } if value.fract() == 0.0 && value.abs() < 1e15 => {
            Some(format!("{}", *value as i64))
        }
        _ => None,
    };
    match (var_name(g), var_name(p)) {
        (Some(n), None) => number_text(p).is_some_and(|t| t == n),
        (None, Some(n)) => number_text(g).is_some_and(|t| t == n),
        _ => g == p,
    }
}

fn side_diff(r: &Relation, flipped: bool) -> Option<Expr> {
    let (Value::Expr(l), Value::Expr(rr)) = (&r.lhs, &r.rhs) else { return None };
    Some(if flipped {
        Expr::Sub(Box::new(rr.clone()), Box::new(l.clone()))
    } else {
        Expr::Sub(Box::new(l.clone()), Box::new(rr.clone()))
    })
}

fn compare_relational(g: &Value, p: &Value, fr: u32) -> bool {
    let (Value::Rel(gr), Value::Rel(pr)) = (g, p) else { return false };
    if gr.len() > 1 || pr.len() > 1 {
        return gr.len() == pr.len()
            && gr
                .iter()
                .zip(pr)
                .all(|(a, b)| compare_relational(&Value::Rel(vec![a.clone()]), &Value::Rel(vec![b.clone()]), fr));
    }
    let (a, b) = (&gr[0], &pr[0]);
    if a.op == b.op
        && let (Some(x), Some(y)) = (side_diff(a, false), side_diff(b, false))
        && expr_eq(&Value::Expr(x), &Value::Expr(y), fr)
    {
        return true;
    }
    if a.op.flipped() == b.op
        && let (Some(x), Some(y)) = (side_diff(a, false), side_diff(b, true))
        && expr_eq(&Value::Expr(x), &Value::Expr(y), fr)
    {
        return true;
    }
    // solve() and compare: equations with the same solutions have proportional sides
    // (checked by evaluation); inequalities in one variable as sets.
    if a.op == RelOp::Eq && b.op == RelOp::Eq {
        if let (Some(x), Some(y)) = (side_diff(a, false), side_diff(b, false)) {
            return proportional(&x, &y);
        }
        return false;
    }
    match (relation_as_set(g), relation_as_set(p)) {
        (Some(x), Some(y)) => compare_sets(&x, &y, fr),
        _ => false,
    }
}

/// Whether `x / y` is one non-zero constant wherever both are defined, with the same variables.
fn proportional(x: &Expr, y: &Expr) -> bool {
    let (mut vx, mut vy) = (Vec::new(), Vec::new());
    x.vars(&mut vx);
    y.vars(&mut vy);
    vx.sort();
    vy.sort();
    if vx.is_empty() || vx != vy {
        return false;
    }
    let mut ratio = None;
    let mut seen = 0;
    for k in 0..POINTS.len() {
        let f = |n: &str| {
            vx.iter().position(|m| m == n).map_or(f64::NAN, |i| POINTS[(k + 3 * i) % POINTS.len()] + 0.1031 * i as f64)
        };
        let (a, b) = (x.eval(&f), y.eval(&f));
        if !(a.is_finite() && b.is_finite()) || b.abs() < 1e-300 {
            continue;
        }
        let r = a / b;
        match ratio {
            None => ratio = Some(r),
            Some(r0) if (r - r0).abs() > 1e-9 * r0.abs().max(1e-12) => return false,
            _ => {}
        }
        seen += 1;
    }
    seen >= 4 && ratio.is_some_and(|r| r != 0.0)
}

/// A relation in one variable against constants as a set (`x > 2` is `(2, ∞)`, `x = 5` is
/// `{5}`, `2 \le x < 3` is `[2, 3)`); `None` otherwise.
fn relation_as_set(v: &Value) -> Option<Value> {
    let Value::Rel(rels) = v else { return None };
    let mut lo = (f64::NEG_INFINITY, false, Expr::Neg(Box::new(Expr::Num { value: f64::INFINITY, float: false })));
    let mut hi = (f64::INFINITY, false, Expr::Num { value: f64::INFINITY, float: false });
    let mut var: Option<String> = None;
    let mut points = Vec::new();
    for r in rels {
        let (Value::Expr(l), Value::Expr(rr)) = (&r.lhs, &r.rhs) else { return None };
        let (name, bound, op) = match (l, constant(rr), rr, constant(l)) {
            (Expr::Var(n), Some(c), _, _) => (n.clone(), (c, rr.clone()), r.op),
            (_, _, Expr::Var(n), Some(c)) => (n.clone(), (c, l.clone()), r.op.flipped()),
            _ => return None,
        };
        if var.as_ref().is_some_and(|v| *v != name) {
            return None;
        }
        var = Some(name);
        match op {
            RelOp::Gt | RelOp::Ge => {
                if bound.0 >= lo.0 {
                    lo = (bound.0, op == RelOp::Ge, bound.1);
                }
            }
            RelOp::Lt | RelOp::Le => {
                if bound.0 <= hi.0 {
                    hi = (bound.0, op == RelOp::Le, bound.1);
                }
            }
            RelOp::Eq => points.push(Value::Expr(bound.1)),
            RelOp::Ne => return None,
        }
    }
    if !points.is_empty() {
        return (rels.len() == points.len()).then_some(Value::Set(points));
    }
    Some(Value::Interval(Box::new(Value::Expr(lo.2)), Box::new(Value::Expr(hi.2)), lo.1, hi.1))
}

fn dedup(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.iter().any(|o| structural_eq(o, v) || same_constant(o, v)) {
            out.push(v.clone());
        }
    }
    out
}

/// Two constant expressions with the same value (sympy's FiniteSet drops such repeats).
fn same_constant(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Expr(x), Value::Expr(y)) => matches!((constant(x), constant(y)), (Some(p), Some(q)) if exact_eq(p, q)),
        _ => false,
    }
}

fn ordered_eq(a: &[Value], b: &[Value], fr: u32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| expr_eq(x, y, fr))
}

fn unordered_eq(a: &[Value], b: &[Value], fr: u32) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        if let Some(j) = (0..b.len()).find(|&j| !used[j] && expr_eq(x, &b[j], fr)) {
            used[j] = true;
            true
        } else {
            false
        }
    })
}

fn compare_interval(a: &Value, b: &Value, fr: u32) -> bool {
    match (a, b) {
        (Value::Interval(s1, e1, l1, r1), Value::Interval(s2, e2, l2, r2)) => {
            l1 == l2 && r1 == r2 && expr_eq(s1, s2, fr) && expr_eq(e1, e2, fr)
        }
        _ => false,
    }
}

/// math-verify's `sympy_compare_sets` (with `sympy_deep_compare_set_and_tuple`).
fn compare_sets(g: &Value, p: &Value, fr: u32) -> bool {
    let wrap = |v: &Value| {
        if is_set(v) || matches!(v, Value::Tuple(_)) { v.clone() } else { Value::Set(vec![v.clone()]) }
    };
    let (a, b) = (wrap(g), wrap(p));
    if let (Value::Interval(..), Value::Interval(..)) = (&a, &b) {
        return compare_interval(&a, &b, fr);
    }
    if structural_eq(&a, &b) {
        return true;
    }
    // Symmetric difference empty: unions component by component, finite sets by value.
    if let (Value::Union(x), Value::Union(y)) = (&a, &b)
        && x.len() == y.len()
        && x.iter().all(|i| y.iter().any(|j| compare_sets(i, j, fr)))
    {
        return true;
    }
    match (&a, &b) {
        (Value::Set(x), Value::Set(y)) => {
            let (x, y) = (dedup(x), dedup(y));
            return unordered_eq(&x, &y, fr);
        }
        (Value::Set(x), Value::Tuple(y)) => return unordered_eq(&dedup(x), y, fr),
        (Value::Tuple(x), Value::Set(y)) => return ordered_eq(x, &dedup(y), fr),
        (Value::Tuple(x), Value::Tuple(y)) => return ordered_eq(x, y, fr),
        _ => {}
    }
    let as_pair = |v: &Value| match v {
        Value::Interval(s, e, false, false) => Some(Value::Tuple(vec![(**s).clone(), (**e).clone()])),
        _ => None,
    };
    if let (Some(t), Value::Set(_) | Value::Tuple(_)) = (as_pair(&a), &b) {
        return compare_sets(&t, &b, fr);
    }
    if let (Value::Set(_) | Value::Tuple(_), Some(t)) = (&a, as_pair(&b)) {
        return compare_sets(&a, &t, fr);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse_value;

    fn eq(g: &str, p: &str) -> bool {
        expr_eq(&parse_value(g).expect("gold parses"), &parse_value(p).expect("prediction parses"), 5)
    }

    #[test]
    fn as_math_verify() {
        assert!(eq("4", "4\\%"));
        assert!(eq("0.04", "4\\%"));
        assert!(eq("\\frac{1}{3}", "0.33333"));
        assert!(!eq("3", "2.999999"));
        assert!(eq("x>2", "(2,\\infty)"));
        assert!(eq("(p,q)=(3,2)", "(3,2)"));
        assert!(eq("5", "x=5"));
        assert!(eq("x \\geq 2", "2 \\leq x"));
        assert!(eq("\\{1,1,2\\}", "\\{2,1\\}"));
        assert!(!eq("(1,2,3)", "\\{3,2,1\\}"));
        assert!(!eq("I(0)e^{-t}", "I(0)"));
        assert!(eq("2x = 4", "x = 2"));
    }
}
