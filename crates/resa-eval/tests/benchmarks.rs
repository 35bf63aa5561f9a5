//! The shipped benchmarks load, and grade as the paper grades them.

use resa_eval::{Grader, Task};

/// The shipped math sets load, and every gold answer is graded correct against itself in
/// the paper's boxed answer sentence with the benchmark's own grading configuration (AIME/AMC
/// the answer column; MATH-500/Minerva the solution text); skipped without `../shared/data`.
#[test]
fn shipped_benchmarks_load_and_self_grade() {
    let root = std::env::var_os("RESA_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = root.join("eval");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} not found (set RESA_SHARED_DATA)", dir.display());
        return;
    }
    let sizes = [30, 30, 40, 500, 272];
    for (name, n) in resa_eval::MATH_BENCHMARKS.iter().zip(sizes) {
        let problems = resa_eval::load_problems(resa_eval::benchmark_file(&dir, name)).expect("benchmark");
        assert_eq!(problems.len(), n, "{name}");
        let task = Task::math(*name, &problems);
        let expected = if matches!(*name, "math500" | "minerva") { Grader::Solution } else { Grader::Answer };
        assert_eq!(task.grader, expected, "{name}: the paper's configuration");
        let wrong: Vec<&str> = problems
            .iter()
            .zip(&task.items)
            .filter(|(p, item)| {
                let c = format!("Therefore, the final answer is: $\\boxed{{{}}}$. I hope it is correct", p.answer);
                !task.grader.grade(&item.gold, &c).correct
            })
            .map(|(p, _)| p.id.as_str())
            .collect();
        assert!(
            wrong.len() * 100 <= n,
            "{name}: {} of {n} gold answers do not grade as themselves: {wrong:?}",
            wrong.len()
        );
    }
    let bad = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(bad.path(), "{\"id\": \"x\", \"problem\": \"p\"}\n").expect("write");
    let err = resa_eval::load_problems(bad.path()).expect_err("missing answer");
    assert!(err.to_string().contains(":1:") && err.to_string().contains("answer"), "{err}");
}
