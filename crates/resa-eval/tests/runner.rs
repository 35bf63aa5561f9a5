//! The runner's pieces that need no model: GPQA loading and shuffling, per-sample seeds,
//! Pass@1 with its standard error, and reading completions back after an interruption.

use resa_eval::{CompletionRecord, EvalConfig, Grader, Task, load_gpqa, read_completions, sample_seed, score};

const CSV: &str = "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n\
r1,\"What is 2+2, in words?\",four,three,five,\"six, maybe\"\n\
r2,\"Which gas?\nPick one.\",argon,neon,xenon,radon\n";

#[test]
fn gpqa_choices_are_shuffled_per_question_and_the_gold_letter_follows_the_answer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("gpqa_diamond.csv");
    std::fs::write(&path, CSV).expect("csv");
    let task = load_gpqa(&path, 0).expect("loads");
    assert_eq!(task.items.len(), 2);
    assert_eq!(task.grader, Grader::Choice);
    for (item, correct) in task.items.iter().zip(["four", "argon"]) {
        assert!(item.message.starts_with("Answer the following multiple choice question."), "{}", item.message);
        let line = format!("{}) {correct}", item.gold);
        assert!(item.message.lines().any(|l| l == line), "{line:?} not in {}", item.message);
    }
    assert!(task.items[1].message.contains("Which gas?\nPick one.\n\nA) "));
    assert!(task.items[0].message.contains(") six, maybe"));
    // Deterministic per seed; over many seeds every position holds the answer sometimes.
    assert_eq!(load_gpqa(&path, 0).expect("again"), task);
    let golds: std::collections::HashSet<String> =
        (0..40).map(|s| load_gpqa(&path, s).expect("loads").items[0].gold.clone()).collect();
    assert_eq!(golds.len(), 4, "{golds:?}");
}

#[test]
fn gpqa_errors_name_the_column_and_the_record() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("bad.csv");
    std::fs::write(&path, "Question,Correct Answer\nq,a\n").expect("csv");
    let e = load_gpqa(&path, 0).expect_err("must fail").to_string();
    assert!(e.contains("Incorrect Answer 1") && e.contains("bad.csv"), "{e}");
    std::fs::write(
        &path,
        "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\nq,a,b,,d\n",
    )
    .expect("csv");
    let e = load_gpqa(&path, 0).expect_err("must fail").to_string();
    assert!(e.contains("Incorrect Answer 2") && e.contains(":2:"), "{e}");
}

#[test]
fn seeds_depend_on_problem_and_sample_only() {
    assert_eq!(sample_seed(0, "math500-001", 0), sample_seed(0, "math500-001", 0));
    assert_ne!(sample_seed(0, "math500-001", 0), sample_seed(0, "math500-001", 1));
    assert_ne!(sample_seed(0, "math500-001", 0), sample_seed(0, "math500-002", 0));
    assert_ne!(sample_seed(0, "math500-001", 0), sample_seed(1, "math500-001", 0));
}

fn record(id: &str, sample: usize, completion: &str, finish: &str) -> CompletionRecord {
    CompletionRecord {
        bench: "t".into(),
        id: id.into(),
        sample,
        seed: 0,
        prompt: String::new(),
        completion: completion.into(),
        gold: "4".into(),
        extracted: String::new(),
        correct: false, // the score grades again
        new_tokens: 10,
        finish: finish.into(),
    }
}

#[test]
fn pass_at_1_is_the_mean_over_problems_with_its_standard_error() {
    let problems = [("a", "4"), ("b", "4"), ("c", "4")];
    let task = Task {
        name: "t".into(),
        grader: Grader::Math,
        items: problems
            .iter()
            .map(|(id, gold)| resa_eval::EvalItem { id: (*id).into(), message: String::new(), gold: (*gold).into() })
            .collect(),
    };
    let right = "so \\boxed{4}";
    let wrong = "so \\boxed{5}";
    let records = vec![
        record("a", 0, right, "stop"),
        record("a", 1, right, "stop"),
        record("b", 0, right, "stop"),
        record("b", 1, wrong, "length"),
        record("c", 0, wrong, "stop"),
        record("c", 1, wrong, "stop"),
        record("c", 2, right, "stop"), // beyond `samples`: ignored
        CompletionRecord { bench: "other".into(), ..record("a", 0, wrong, "stop") },
    ];
    let cfg = EvalConfig { samples: 2, ..EvalConfig::default() };
    let report = score(&[task], &records, &cfg, "m");
    let b = &report.benches[0];
    assert_eq!((b.problems, b.completions, b.truncated), (3, 6, 1));
    // per problem: 1, 0.5, 0 → mean 0.5; sample sd 0.5; s.e. 0.5 / sqrt(3).
    assert!((b.pass_at_1_pct - 50.0).abs() < 1e-9);
    assert!((b.stderr_pct - 50.0 / 3f64.sqrt()).abs() < 1e-9, "{}", b.stderr_pct);
    assert!((report.average_pct - 50.0).abs() < 1e-9);
}

#[test]
fn an_unfinished_last_line_is_dropped_and_other_bad_lines_are_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("completions.jsonl");
    assert!(read_completions(&path).expect("absent is empty").is_empty());
    let line = serde_json::to_string(&record("a", 0, "x", "stop")).expect("json");
    std::fs::write(&path, format!("{line}\n{}", &line[..20])).expect("write");
    assert_eq!(read_completions(&path).expect("reads").len(), 1);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{line}\n"));
    std::fs::write(&path, format!("{{\"bench\": 1}}\n{line}\n")).expect("write");
    let e = read_completions(&path).expect_err("must fail").to_string();
    assert!(e.contains("completions.jsonl:1"), "{e}");
}
