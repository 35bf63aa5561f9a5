//! Agreement with math-verify on generated cases (`scripts/reference/grading_reference.py`):
//! 8,754 cases from the shipped benchmarks, each graded with the paper's configuration of its
//! benchmark (AIME/AMC against the answer column, MATH-500/Minerva against the solution
//! text), in the forms real answers take (percent, thousands separators, degrees, units,
//! "or"-joined answers, several boxes, compound left sides, approximations). At least 99.5 %
//! must agree; every disagreement is printed (`--nocapture`).
//!
//! A generated set measures its generator: this test is kept beside the independent ones in
//! `tests/mathverify.rs` (math-verify's own suite, real solutions), not instead of them.

use std::collections::BTreeMap;
use std::path::Path;

use resa_grade::{GradingConfig, grade_explained};

#[derive(serde::Deserialize)]
struct Case {
    bench: String,
    config: String,
    gold: String,
    completion: String,
    label: bool,
}

#[test]
fn agrees_with_math_verify() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grading_cases.jsonl");
    let text = std::fs::read_to_string(path).expect("cases");
    let cases: Vec<Case> = text.lines().map(|l| serde_json::from_str(l).expect("case")).collect();
    assert!(cases.len() >= 3000, "{} cases", cases.len());
    let mut configs = BTreeMap::new();
    let mut disagree = Vec::new();
    for c in &cases {
        let config =
            configs.entry(c.config.clone()).or_insert_with(|| GradingConfig::by_name(&c.config).expect("config"));
        let e = grade_explained(config, &c.gold, &c.completion);
        if e.correct != c.label {
            let gold: String = c.gold.chars().rev().take(100).collect::<Vec<_>>().into_iter().rev().collect();
            disagree.push(format!(
                "[{}] gold …{gold:?} | {:?} -> ours {} (gold {:?}, pred {:?}), math-verify {}",
                c.bench, c.completion, e.correct, e.gold, e.pred, c.label
            ));
        }
    }
    let agreement = 1.0 - disagree.len() as f64 / cases.len() as f64;
    for d in &disagree {
        eprintln!("{d}");
    }
    eprintln!("agreement {:.2}% over {} cases ({} disagreements)", agreement * 100.0, cases.len(), disagree.len());
    assert!(agreement >= 0.995, "agreement {:.2}%", agreement * 100.0);
}
