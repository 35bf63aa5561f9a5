//! Random and pathological input: grading never panics, never overflows the stack, and
//! stays within its time budget on megabyte completions.

use std::time::Instant;

use proptest::prelude::*;
use resa_grade::{GradingConfig, grade, grade_choice, grade_explained};

fn all_configs() -> Vec<GradingConfig> {
    GradingConfig::NAMES.iter().map(|n| GradingConfig::by_name(n).expect("config")).collect()
}

#[test]
fn pathological_inputs_are_graded_without_crashing() {
    let deep_parens = format!("\\boxed{{{}1{}}}", "(".repeat(7000), ")".repeat(7000));
    let deep_braces = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
    let minus = format!("The answer is ${}5$", "-".repeat(100_000));
    let long_sum = format!("$\\boxed{{{}}}$", vec!["1"; 20_000].join("+"));
    let unicode = "İ→ answer: İİ ǅ final answer is $\\boxed{2}$. I hope ⟶ (B) answer İ".to_string();
    let unclosed = "\\boxed{".repeat(5000);
    let dollars = "$".repeat(50_000);
    for text in [deep_parens, deep_braces, minus, long_sum, unicode, unclosed, dollars] {
        for c in all_configs() {
            let _ = grade(&c, "5", &text);
            let _ = grade(&c, &text, "5");
        }
        let _ = grade_choice("B", &text);
    }
}

fn megabyte(unit: &str) -> String {
    unit.repeat(1_000_000 / unit.len() + 1)
}

#[test]
fn megabyte_completions_grade_in_bounded_time() {
    let config = GradingConfig::answer();
    for unit in [
        "1 2 3 4 5 6 7 8 9 ",
        "Let me check again: $x = 3$ and so the answer is 4. ",
        "wait wait wait ",
        "\\frac{1}{2} + \\sqrt{3} = ",
        "$$ a $$ \\[ b \\] \\( c \\) ",
    ] {
        let text = format!("{}\nTherefore, the final answer is: $\\boxed{{4}}$. I hope it is correct", megabyte(unit));
        let start = Instant::now();
        let e = grade_explained(&config, "4", &text);
        let took = start.elapsed();
        eprintln!("{:?}…: {took:?}, correct {}, timed out {}", &unit[..10.min(unit.len())], e.correct, e.timed_out);
        // The budget bounds the time (5 s by default, as math-verify's timeout); what is
        // graded within it is graded right.
        assert!(took.as_secs_f64() < 2.0 * config.budget_ms as f64 / 1000.0 + 1.0, "{took:?}");
        assert!(e.correct || e.timed_out, "{e:?}");
        // Without a boxed answer every priority is searched.
        let start = Instant::now();
        let e = grade_explained(&config, "4", &megabyte(unit));
        eprintln!("  no box: {:?}, timed out {}", start.elapsed(), e.timed_out);
        assert!(start.elapsed().as_secs_f64() < 2.0 * config.budget_ms as f64 / 1000.0 + 1.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_unicode_never_panics(s in "\\PC{0,400}") {
        for c in all_configs() {
            let _ = grade(&c, &s, &s);
            let _ = grade(&c, "1", &s);
        }
    }

    #[test]
    fn random_latex_fragments_never_panic(parts in proptest::collection::vec(
        prop_oneof![
            Just("\\boxed{"), Just("}"), Just("{"), Just("$"), Just("$$"), Just("\\frac"), Just("\\sqrt"),
            Just("("), Just(")"), Just("["), Just("]"), Just("\\left("), Just("\\right)"), Just("="),
            Just("\\le"), Just(","), Just(";"), Just("\\{"), Just("\\}"), Just("^"), Just("_"), Just("x"),
            Just("12"), Just("3.5"), Just("-"), Just("+"), Just("\\%"), Just("answer: "), Just("\\text{"),
            Just("\\begin{pmatrix}"), Just("\\end{pmatrix}"), Just("&"), Just("\\\\"), Just("İ"), Just("\\cup"),
            Just("\\pm"), Just("f("), Just("\\approx"), Just(" and "), Just("final answer is "), Just("I hope"),
        ],
        0..60,
    )) {
        let s: String = parts.concat();
        for c in all_configs() {
            let _ = grade(&c, &s, &s);
            let _ = grade(&c, "\\frac{1}{2}", &s);
        }
    }
}
