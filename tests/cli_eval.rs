//! `resa eval` end to end on a tiny random model with the toy tokenizer: a handful of
//! problems from a math file and the toy world, two samples each; the completions, the
//! report and resuming after an interruption. Accuracy is whatever it is (a random model);
//! the plumbing and the file formats are what is tested.

use std::path::Path;
use std::process::Command;

use resa::eval::{CompletionRecord, Report, read_completions};
use resa::qwen2::safetensors_io::StoredDtype;
use resa::qwen2::{Qwen2Config, Qwen2ForCausalLM};
use resa::toy::world;

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

fn toy_model(dir: &Path) {
    let cfg = Qwen2Config { vocab_size: world::vocab_size(), ..Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<burn::backend::Flex>::random(&cfg, 3, &Default::default(), burn::tensor::DType::F32);
    model.save_pretrained(dir, StoredDtype::F32).expect("save model");
    world::write_tokenizer(dir).expect("tokenizer");
}

#[test]
fn eval_writes_completions_and_report_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    toy_model(&model);
    let data = tmp.path().join("eval");
    std::fs::create_dir_all(&data).expect("dir");
    let rows =
        [("aime24-0", "What is 1+2?", "3"), ("aime24-1", "What is 2*3?", "6"), ("aime24-2", "What is 9-4?", "5")];
    let jsonl: String = rows
        .iter()
        .map(|(id, p, a)| format!("{}\n", serde_json::json!({"id": id, "problem": p, "answer": a})))
        .collect();
    std::fs::write(data.join("aime24.jsonl"), jsonl).expect("write");
    let out = tmp.path().join("out");
    let args = |seed: &str| {
        vec![
            "eval".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--tasks".into(),
            "aime24,toy".into(),
            "--eval-dir".into(),
            data.display().to_string(),
            "--limit".into(),
            "3".into(),
            "--samples".into(),
            "2".into(),
            "--max-new-tokens".into(),
            "6".into(),
            "--batch-size".into(),
            "4".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let run = |seed: &str| {
        let a = args(seed);
        resa(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run("5");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| aime24 | 3 | 6 |") && stdout.contains("| toy | 3 | 6 |"), "{stdout}");

    let records = read_completions(&out.join("completions.jsonl")).expect("completions");
    assert_eq!(records.len(), 12);
    let first = &records[0];
    assert_eq!(
        (first.bench.as_str(), first.id.as_str(), first.sample, first.gold.as_str()),
        ("aime24", "aime24-0", 0, "3")
    );
    // The math prompt went through the toy chat template.
    assert!(
        first.prompt.starts_with("<|bos|>Q: Solve the following math problem efficiently and clearly."),
        "{}",
        first.prompt
    );
    assert!(first.prompt.ends_with("What is 1+2?\nA: <think>"), "{}", first.prompt);
    for r in &records {
        assert!(r.new_tokens >= 1 && r.new_tokens <= 6, "{r:?}");
        assert!(r.finish == "stop" || (r.finish == "length" && r.new_tokens == 6), "{r:?}");
    }
    let toy_items: Vec<&CompletionRecord> = records.iter().filter(|r| r.bench == "toy").collect();
    assert_eq!(toy_items.len(), 6);
    assert!(toy_items[0].prompt.starts_with("<|bos|>Q: What is "), "{}", toy_items[0].prompt);

    let report = Report::read(&out.join("report.json")).expect("report.json");
    assert_eq!(report.benches.len(), 2);
    for b in &report.benches {
        assert_eq!((b.problems, b.completions), (3, 6));
        assert!((0.0..=100.0).contains(&b.pass_at_1_pct));
    }
    assert!(std::fs::read_to_string(out.join("report.md")).expect("report.md").contains("| **Average** |"));

    // Interrupt: drop the last three completions and leave a half-written line; the rerun
    // generates exactly those again, with the same per-sample seeds and the same text.
    let text = std::fs::read_to_string(out.join("completions.jsonl")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines[..9].join("\n") + "\n" + &lines[9][..15];
    std::fs::write(out.join("completions.jsonl"), kept).expect("write");
    let o = run("5");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = read_completions(&out.join("completions.jsonl")).expect("completions");
    assert_eq!(again.len(), 12);
    for (a, b) in records.iter().zip(&again) {
        assert_eq!(
            (&a.bench, &a.id, a.sample, a.seed, &a.completion),
            (&b.bench, &b.id, b.sample, b.seed, &b.completion)
        );
    }

    // Other generation settings in the same folder are refused, naming the setting.
    let o = run("6");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("seed: was 5, now 6") && err.contains("eval_config.json"), "{err}");
}

#[test]
fn eval_errors_name_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let o = resa(&["eval", "--model", "unused", "--tasks", "mmlu", "--out", out.to_str().expect("utf8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown benchmark `mmlu`") && err.contains("math500"), "{err}");
    let o = resa(&["eval", "--model", "unused", "--tasks", "gpqa_diamond", "--out", out.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--gpqa FILE"), "{err}");
    let o = resa(&[
        "eval",
        "--model",
        "unused",
        "--tasks",
        "aime24",
        "--eval-dir",
        tmp.path().to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("aime24.jsonl does not exist"), "{err}");
}

/// Hub options exist only in a build that can use them.
#[cfg(not(feature = "hub"))]
#[test]
fn hub_flags_are_absent_without_the_hub_feature() {
    for cmd in ["eval", "reproduce"] {
        let o = resa(&[cmd, "--hub"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("unexpected argument '--hub'"), "{cmd}: {err}");
    }
}
