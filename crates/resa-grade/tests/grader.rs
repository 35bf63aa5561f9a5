//! Hand-written grading cases: forms of the same answer that must agree, and near misses
//! that must not. Every verdict here is math-verify 0.9's under lighteval's settings
//! (checked with `scripts/reference/mathverify_suite_reference.py`'s `label`).

use resa_grade::{extract_choice, grade_math};

#[track_caller]
fn yes(gold: &str, completion: &str) {
    let g = grade_math(gold, completion);
    assert!(g.correct, "{gold:?} vs {completion:?} (extracted {:?})", g.extracted);
}

#[track_caller]
fn no(gold: &str, completion: &str) {
    let g = grade_math(gold, completion);
    assert!(!g.correct, "{gold:?} vs {completion:?} wrongly accepted (extracted {:?})", g.extracted);
}

#[test]
fn equivalent_forms_are_accepted() {
    yes("\\frac{1}{2}", "so the answer is $\\boxed{0.5}$");
    yes("\\frac{1}{2}", "Therefore, the final answer is: $\\boxed{\\dfrac12}$. I hope it is correct");
    yes("2\\sqrt{3}", "\\boxed{\\sqrt{12}}");
    yes("10080", "The total is \\boxed{10{,}080}".replace("{,}", ",").as_str());
    yes("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}");
    yes("[-2, 7)", "$\\boxed{[-2,7)}$");
    yes("x^2 + 2x + 1", "\\boxed{(x+1)^2}");
    yes("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}");
    yes("45^\\circ", "The angle is \\boxed{45^{\\circ}}.");
    yes("5", "After simplifying we get $x = 5$.");
    yes("1 \\pm \\sqrt{19}", "\\boxed{1 - \\sqrt{19}, 1 + \\sqrt{19}}");
    yes("3.83 \\times 10^{35}", "\\boxed{3.83 \\times 10^{35}}");
    yes("4", "\\boxed{4\\%}");
    yes("26000", "so it is $26000\\%$");
    yes("14916", "The final answer is $14{,}916$. I hope it is correct.");
    yes("(3, 2)", "$(p,q)=(3,2)$");
    yes("210", "$f(9)-f(3)=210$");
    yes("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}");
}

#[test]
fn wrong_or_missing_answers_are_rejected() {
    no("\\frac{1}{3}", "\\boxed{0.33}");
    no("5", "\\boxed{6}");
    no("(1, 2)", "\\boxed{(2, 1)}");
    no("[1, 2]", "\\boxed{(1, 2)}");
    no("7.4e-12", "\\boxed{0}");
    no("42", "I could not solve this problem.");
    no("\\text{Evelyn}", "\\boxed{\\text{Navin}}");
    // math-verify reads `e` as Euler's number: 3.83e35 is 3.83·e·35.
    no("3.83e35", "\\boxed{3.83 \\times 10^{35}}");
    // A function application is not a product that vanishes at the sample points.
    no("I(0)e^{-\\frac{t}{RC}}", "\\boxed{I(0)}");
    // …but `\\mathbf{4 3}` is the symbol `43`, whose text equals 43's (math-verify's str
    // comparison); it is not 4·3.
    yes("43", "\\boxed{\\mathbf{4 3}}");
    no("12", "\\boxed{\\mathbf{4 3}}");
}

#[test]
fn the_last_boxed_answer_wins() {
    let long = "First I thought \\boxed{3}, but that was wrong; after checking every case again, correcting the sum: \\boxed{4}";
    yes("4", long);
    no("3", long);
    // Boxes close together with a separator are one answer {3, 4} (math-verify).
    no("4", "First I thought \\boxed{3}, but correcting: \\boxed{4}");
    yes("\\{3, 4\\}", "First I thought \\boxed{3}, but correcting: \\boxed{4}");
}

#[test]
fn choice_letters() {
    assert_eq!(extract_choice("The reasoning... Answer: C").as_deref(), Some("C"));
    assert_eq!(extract_choice("So the answer is (B).").as_deref(), Some("B"));
    assert_eq!(extract_choice("No idea."), None);
}

/// A gold that is an amount with an escaped dollar (`\$1.17`): the dollar is not a math
/// delimiter, so the bare gold is boxed as any other, and read as math-verify reads
/// `\boxed{\$1.17}` (1.17).
#[test]
fn a_gold_with_an_escaped_dollar_is_an_amount() {
    use resa_grade::{GradingConfig, grade};
    let cfg = GradingConfig::boxed_answer();
    for (gold, right, wrong) in [
        ("\\$36", "So the answer is $\\boxed{\\$36}$.", "\\boxed{\\$37}"),
        ("\\$1.17", "\\boxed{\\$1.17}", "\\boxed{1.71}"),
        ("\\$1.17", "The total is \\boxed{1.17}.", "\\boxed{\\$11.7}"),
        ("\\$32,\\!348", "\\boxed{32,348}", "\\boxed{32,349}"),
        ("\\$32,\\!348", "The answer is $\\boxed{\\$32,\\!348}$", "\\boxed{3,248}"),
    ] {
        let g = grade(&cfg, gold, right);
        assert!(g.correct, "{gold} vs {right}: {g:?}");
        assert!(!grade(&cfg, gold, wrong).correct, "{gold} vs {wrong}");
    }
    // A gold delimited by real dollars is read as it is, not boxed again.
    assert!(grade(&cfg, "$\\frac{1}{2}$", "\\boxed{0.5}").correct);
    assert!(grade(&cfg, "$36$ dollars", "\\boxed{36}").correct);
}
