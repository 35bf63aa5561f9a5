#![allow(missing_docs)]
//! Grading throughput (completions per second) over the 4,738 labelled cases of the
//! agreement test. Run with `cargo bench -p resa-eval`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_eval::grade_math;

fn benches(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grading_cases.jsonl");
    let text = std::fs::read_to_string(path).expect("cases");
    let cases: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (v["gold"].as_str().unwrap_or("").to_string(), v["completion"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let mut g = c.benchmark_group("grading");
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.bench_function("math_cases", |b| {
        b.iter(|| cases.iter().filter(|(gold, comp)| grade_math(gold, comp).correct).count())
    });
    g.finish();
}

criterion_group!(grading, benches);
criterion_main!(grading);
