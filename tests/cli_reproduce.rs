//! `resa reproduce`: every experiment file under `configs/` parses, lists, prints its plan,
//! and runs end to end with `--tiny` on the committed toy model (the whole plan: Stage I,
//! Stage II, evaluation, results beside the paper's numbers); a rerun resumes; bad
//! experiment files are refused with the file and the field named.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).current_dir(root()).args(args).output().expect("runs resa")
}

fn experiment_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("configs"))
        .expect("configs/")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_experiment_lists_plans_and_runs_tiny() {
    let names = experiment_names();
    assert!(names.len() >= 20, "the paper's experiments: {names:?}");
    let o = resa(&["reproduce", "--list"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for n in &names {
        assert!(out.lines().any(|l| l.starts_with(&format!("{n} "))), "{n} not listed:\n{out}");
    }
    assert!(out.contains("48.06"), "paper numbers listed:\n{out}");

    let o = resa(&["reproduce", "all", "--dry-run"]);
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for n in &names {
        assert!(plan.lines().any(|l| l.starts_with(&format!("# {n} — "))), "{n} has no plan:\n{plan}");
    }
    assert!(plan.contains("layers.26") && plan.contains("objective = \"sft\""), "{plan}");
    // The budget: Resa-STILL-v1 is 2 epochs of 1,448 steps at the paper's rate (20 minutes
    // on 2 GPUs), evaluated at 5 checkpoints and its final adapter; and a total.
    assert!(plan.contains("## estimate: Stage II 2896 steps ≈ 0.67 GPU-hours; 6 evaluation(s)"), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("# total: Stage II ")), "{plan}");
    let o = resa(&["reproduce", "all", "--dry-run", "--gpu-seconds-per-step=0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--gpu-seconds-per-step"));

    let tmp = tempfile::tempdir().expect("tmp");
    let runs = tmp.path().join("runs");
    let runs_arg = runs.to_str().expect("utf8");
    let o = resa(&["reproduce", "all", "--tiny", "--runs", runs_arg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for n in &names {
        let result: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(runs.join(n).join("result.json")).unwrap_or_else(|e| panic!("{n}: {e}\n{err}")),
        )
        .expect("json");
        let rows = result["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{n}: {result}");
        for row in rows {
            let bench = &row["report"]["benches"][0];
            assert_eq!((bench["bench"].as_str(), bench["problems"].as_u64()), (Some("toy"), Some(4)), "{n}: {row}");
        }
        assert_eq!(result["tiny"], true);
    }
    // Checkpoint evaluation: every saved checkpoint of a training experiment is evaluated,
    // and the final adapter, the best checkpoint and the one at the paper's step reported.
    let v1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("resa-still-v1/result.json")).expect("result"))
            .expect("json");
    let steps: Vec<u64> = v1["rows"].as_array().expect("rows").iter().filter_map(|r| r["step"].as_u64()).collect();
    assert_eq!(steps, [2], "the toy run saves at step 2: {v1}");
    assert_eq!(v1["paper_step"], 2000);
    let sel = &v1["checkpoints"][0];
    assert_eq!(sel["best"]["step"], 2, "{v1}");
    assert!(sel["final_avg"].is_number() && sel["at_paper_step"].is_null(), "{sel}");
    let md = std::fs::read_to_string(runs.join("resa-still-v1/result.md")).expect("result.md");
    assert!(md.contains("## Checkpoints") && md.contains("47.28 (step 2000)"), "{md}");
    assert!(runs.join("resa-still-v1/eval-checkpoints/checkpoint-2/completions.jsonl").is_file());
    // The sweep: Stage I for every (scaled) hookpoint in one pass, then one run per hookpoint.
    let sweep = runs.join("layer-sweep");
    let scores: std::collections::BTreeMap<String, f64> =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("scores.json")).expect("scores")).expect("json");
    assert_eq!(scores.len(), 6, "26 paper layers onto the toy model's 6: {scores:?}");
    for layer in 0..6 {
        let h = format!("layers.{layer}");
        assert!(sweep.join("stage1").join(&h).join("cfg.json").is_file(), "{h} SAE");
        assert!(sweep.join(&h).join("stage2/adapter/adapter_config.json").is_file(), "{h} adapter");
    }
    // Its reasoning features per hookpoint beside the paper's counts (Table 6).
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("result.json")).expect("result")).expect("json");
    let counts = result["feature_counts"].as_object().expect("feature_counts");
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert_eq!(result["paper_feature_counts"]["layers.18"], 5);
    assert!(sweep.join("features/counts.json").is_file(), "resa features' files");
    let md = std::fs::read_to_string(sweep.join("result.md")).expect("result.md");
    assert!(md.contains("| features (measured) | features (paper) |"), "{md}");
    // Tina-style sources: a made-up adapter merged into the toy model.
    assert!(runs.join("_toy/adapters").read_dir().expect("adapters").count() >= 2);

    // A rerun resumes every stage.
    let o = resa(&["reproduce", "resa-still-v5", "--tiny", "--runs", runs_arg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("stage II: up to date"), "{err}");

    // Every tune stage's Stage II step is checked against the memory limit before any stage
    // runs (here a limit no step fits in; the message names the experiment and the stage).
    let fresh = tmp.path().join("fresh");
    let o = resa(&[
        "reproduce",
        "resa-still-v5",
        "--tiny",
        "--runs",
        fresh.to_str().expect("utf8"),
        "--memory-limit",
        "0.0001",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("resa-still-v5.toml") && err.contains("one Stage II step needs at least"), "{err}");
    assert!(!fresh.join("resa-still-v5/stage1").exists(), "a stage ran before the check: {err}");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn bad_experiment_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = std::fs::read_to_string(root().join("configs/resa-still-v5.toml")).expect("config");
    let dir = tmp.path().join("a");
    write(&dir, "other-name.toml", &good);
    let o = resa(&["reproduce", "--list", "--configs", dir.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("other-name.toml") && err.contains("resa-still-v5"), "{err}");

    let dir = tmp.path().join("b");
    write(&dir, "resa-still-v5.toml", &good.replace("[tune.sae]", "[tune.sae]\nlatents = 5"));
    let o = resa(&["reproduce", "--list", "--configs", dir.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("resa-still-v5.toml") && err.contains("latents"), "{err}");

    let o = resa(&["reproduce", "no-such-experiment"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no experiment `no-such-experiment`"), "{err}");
}
