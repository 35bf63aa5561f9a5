//! `resa reproduce toy-paper --quick` and `resa toy-tina --quick` on the committed toy models:
//! every table's rows of every seed, the claims per seed and over the seeds in the stable
//! report shape, a rerun reusing every stage.

use std::path::Path;
use std::process::Output;

fn resa(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
}

#[test]
fn the_quick_toy_paper_reports_every_table_and_claim() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("toy-paper");
    let o = resa(&["reproduce", "toy-paper", "--quick", "--out", out.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("claims hold at toy scale"), "{err}");
    let report = json(&out.join("report.json"));
    let rows = report["rows"].as_array().expect("rows");
    let roles: Vec<&str> = rows.iter().map(|r| r["role"].as_str().expect("role")).collect();
    for role in ["base", "rl-source", "sae-tuning", "cot-free-sft", "cot-sft", "adapter-transfer", "layer"] {
        assert!(roles.contains(&role), "no {role} row: {roles:?}");
    }
    for table in ["3", "4", "5", "6"] {
        assert!(rows.iter().any(|r| r["table"] == table), "no row of table {table}");
    }
    for r in rows {
        for key in
            ["seed", "id", "table", "name", "role", "pass_at_1", "stderr", "n_problems", "n_samples", "reasoned_pct"]
        {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        let p = r["pass_at_1"].as_f64().expect("pass");
        assert!((0.0..=100.0).contains(&p), "{r}");
        assert_eq!(r["n_problems"], 8);
        assert_eq!(r["n_samples"], 2);
    }
    // Two seeds, each with the same rows (the bolded rows of Table 4 among them).
    let ids = |seed: u64| -> Vec<&str> {
        rows.iter().filter(|r| r["seed"] == seed).map(|r| r["id"].as_str().expect("id")).collect()
    };
    assert_eq!(ids(0), ids(1));
    for id in ["base", "rl-source", "sae-tuning", "source-0", "source-0-scratch", "sibling-adapter", "layers.1"] {
        assert!(ids(0).contains(&id), "no row {id}: {:?}", ids(0));
    }
    let claims = report["claims"].as_array().expect("claims");
    assert!(claims.len() >= 2 * 12, "{claims:?}");
    for c in claims {
        assert!(c["id"].is_string() && c["claim"].is_string() && c["holds"].is_boolean(), "{c}");
        assert!(c["seed"] == 0 || c["seed"] == 1, "{c}");
        assert!(c["diff"].as_f64().is_some() && c["stderr"].as_f64().is_some_and(|s| s >= 0.0), "{c}");
    }
    let recovery: Vec<&serde_json::Value> = claims.iter().filter(|c| c["id"] == "sae_recovers_rl_gain").collect();
    assert_eq!(recovery.len(), 2, "{claims:?}");
    for c in recovery {
        assert!(c["ratio"].is_null() || c["ratio"]["resamples"].as_u64().is_some_and(|n| n <= 2000), "{c}");
        assert!(c["test"].as_str().expect("test").contains("bootstrap"), "{c}");
    }
    let summary = report["summary"].as_array().expect("summary");
    let rl = summary.iter().find(|s| s["id"] == "rl_beats_base").expect("rl_beats_base in the summary");
    for key in ["seeds", "holds_in", "mean_diff", "sd_diff"] {
        assert!(!rl[key].is_null(), "{key} missing in {rl}");
    }
    assert_eq!(rl["seeds"], 2);
    let per_seed: Vec<f64> =
        claims.iter().filter(|c| c["id"] == "rl_beats_base").map(|c| c["diff"].as_f64().expect("diff")).collect();
    let mean = per_seed.iter().sum::<f64>() / 2.0;
    assert!((rl["mean_diff"].as_f64().expect("mean") - mean).abs() < 1e-9, "{rl} {per_seed:?}");
    let holds_in = claims.iter().filter(|c| c["id"] == "rl_beats_base" && c["holds"] == true).count();
    assert_eq!(rl["holds_in"], holds_in);
    assert_eq!(rl["holds"], holds_in == 2, "one seed of two is not a majority");
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    for part in [
        "## Table 3",
        "## Table 4",
        "## Table 5",
        "## Table 6",
        "## The paper's claims at toy scale",
        "reasoning features",
    ] {
        assert!(md.contains(part), "{part}: {md}");
    }
    // Every stage's artifacts: the toy Tina's adapter and checkpoints, SAEs, adapters (per
    // seed), the sibling (once).
    for seed in ["seed-0", "seed-1"] {
        let dir = out.join(seed);
        assert!(dir.join("toy-tina/adapter/adapter_config.json").is_file());
        assert!(dir.join("toy-tina/checkpoint-2").is_dir());
        assert!(dir.join("sae-tuning/stage2/adapter/adapter_model.safetensors").is_file());
        assert!(dir.join("sae-source-0-scratch/stage1/layers.3/cfg.json").is_file());
        assert!(dir.join("sweep/stage1/layers.1/cfg.json").is_file());
    }
    assert!(out.join("sibling/model.safetensors").is_file() && out.join("sibling/tokenizer.json").is_file());
    // The toy Tina's curves (reward, KL, completion length) beside its metrics.
    assert!(out.join("seed-0/toy-tina/curves.svg").is_file(), "the toy Tina's training curves");
    assert!(md.contains("## Training curves") && md.contains("seed-1/toy-tina/curves.svg"), "{md}");
    // The seeds differ downstream of the base model.
    let adapter =
        |seed: &str| std::fs::read(out.join(seed).join("toy-tina/adapter/adapter_model.safetensors")).expect("adapter");
    assert_ne!(adapter("seed-0"), adapter("seed-1"));

    // A rerun reuses every stage and reports the same numbers.
    let o = resa(&["reproduce", "toy-paper", "--quick", "--out", out.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("up to date"), "{err}");
    let again = json(&out.join("report.json"));
    assert_eq!(again["rows"], report["rows"]);
    assert_eq!(again["claims"], report["claims"]);
    assert_eq!(again["summary"], report["summary"]);
}

#[test]
fn the_toy_paper_refuses_settings_it_cannot_run_before_running() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("p");
    let o = resa(&["reproduce", "toy-paper", "--quick", "--seeds", "0", "--out", out.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("seeds (0)"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = resa(&["reproduce", "toy-paper", "--world", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("arith, elicit"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "nothing is written before the settings are checked");
}

#[test]
fn the_quick_toy_tina_trains_and_compares_paired() {
    let tmp = tempfile::tempdir().expect("tmp");
    let arith = tmp.path().join("arith");
    let o = resa(&["toy-tina", "--quick", "--world", "arith", "--out", arith.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = json(&arith.join("report.json"));
    assert_eq!(report["config"]["world"], "arith");
    assert!(report["config"]["model"].as_str().expect("model").ends_with("toy-qwen2"), "{report}");
    let first = |dir: &Path| {
        let line = std::fs::read_to_string(dir.join("eval/base/completions.jsonl")).expect("completions");
        serde_json::from_str::<serde_json::Value>(line.lines().next().expect("a line")).expect("json")
    };
    assert_eq!(first(&arith)["bench"], "toy");

    let out = tmp.path().join("tina");
    let o = resa(&["toy-tina", "--quick", "--out", out.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = json(&out.join("report.json"));
    assert_eq!(report["config"]["world"], "elicit", "the default world");
    assert_eq!(first(&out)["bench"], "toy-elicit");
    assert_eq!(report["paired"]["problems"], 8);
    assert!(report["paired"]["stderr_pct"].as_f64().is_some());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 3);
    for l in metrics.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        for key in ["reward", "kl", "completion_length"] {
            assert!(v[key].as_f64().is_some(), "{key}: {l}");
        }
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("Paired difference"));
}
