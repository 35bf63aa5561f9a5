#![allow(missing_docs)]
//! Grading throughput (completions per second). Run with `cargo bench -p resa-grade`.
//!
//! - `realistic_2_20kb`: human-written MATH-500 and Minerva solutions (the committed
//!   `real_solutions.jsonl` fixture), each repeated until it is 2–20 KB long — the size of
//!   real reasoning-model completions — graded against the answer column with the paper's
//!   configuration for those sets' answers;
//! - `short_forms`: the generated agreement cases (short answer sentences), each with its
//!   benchmark's configuration.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_grade::{GradingConfig, grade};

fn read(file: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
    std::fs::read_to_string(path).expect("cases").lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

fn benches(c: &mut Criterion) {
    let realistic: Vec<(String, String)> = read("real_solutions.jsonl")
        .into_iter()
        .filter(|v| v["config"] == "answer")
        .map(|v| {
            let sol = v["completion"].as_str().unwrap_or("").to_string();
            let mut text = sol.clone();
            let target = 2_000 + (sol.len() * 7919) % 18_000;
            while text.len() < target && !sol.is_empty() {
                text.push_str("\n\nLet me double-check.\n\n");
                text.push_str(&sol);
            }
            (v["gold"].as_str().unwrap_or("").to_string(), text)
        })
        .collect();
    let short: Vec<(String, String, GradingConfig)> = read("grading_cases.jsonl")
        .into_iter()
        .map(|v| {
            let config = GradingConfig::by_name(v["config"].as_str().unwrap_or("")).expect("config");
            (v["gold"].as_str().unwrap_or("").to_string(), v["completion"].as_str().unwrap_or("").to_string(), config)
        })
        .collect();
    let answer = GradingConfig::answer();
    let mut g = c.benchmark_group("grading");
    g.sample_size(10);
    g.throughput(Throughput::Elements(realistic.len() as u64));
    g.bench_function("realistic_2_20kb", |b| {
        b.iter(|| realistic.iter().filter(|(gold, comp)| grade(&answer, gold, comp).correct).count())
    });
    g.throughput(Throughput::Elements(short.len() as u64));
    g.bench_function("short_forms", |b| {
        b.iter(|| short.iter().filter(|(gold, comp, cfg)| grade(cfg, gold, comp).correct).count())
    });
    g.finish();
}

criterion_group!(grading, benches);
criterion_main!(grading);
