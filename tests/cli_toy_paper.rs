//! `resa reproduce toy-paper --quick` and `resa toy-tina --quick` on the committed toy model:
//! every table's rows and the claims in the stable report shape, a rerun reusing every stage.

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
        for key in ["table", "name", "role", "pass_at_1", "stderr", "n_problems", "n_samples"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        let p = r["pass_at_1"].as_f64().expect("pass");
        assert!((0.0..=100.0).contains(&p), "{r}");
        assert_eq!(r["n_problems"], 8);
        assert_eq!(r["n_samples"], 2);
    }
    let claims = report["claims"].as_array().expect("claims");
    assert!(claims.len() >= 8, "{claims:?}");
    for c in claims {
        assert!(c["claim"].is_string() && c["holds"].is_boolean(), "{c}");
        assert!(c["diff"].as_f64().is_some() && c["stderr"].as_f64().is_some_and(|s| s >= 0.0), "{c}");
        // A claim that holds says so in the Markdown as well.
    }
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
    // Every stage's artifacts: the toy Tina's adapter and checkpoints, SAEs, adapters.
    assert!(out.join("toy-tina/adapter/adapter_config.json").is_file());
    assert!(out.join("toy-tina/checkpoint-2").is_dir());
    assert!(out.join("sae-tuning/stage2/adapter/adapter_model.safetensors").is_file());
    assert!(out.join("sweep/stage1/layers.1/cfg.json").is_file());
    assert!(out.join("sibling/model.safetensors").is_file() && out.join("sibling/tokenizer.json").is_file());

    // A rerun reuses every stage and reports the same numbers.
    let o = resa(&["reproduce", "toy-paper", "--quick", "--out", out.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("up to date"), "{err}");
    let again = json(&out.join("report.json"));
    assert_eq!(again["rows"], report["rows"]);
    assert_eq!(again["claims"], report["claims"]);
}

#[test]
fn the_quick_toy_tina_trains_and_compares_paired() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("tina");
    let o = resa(&["toy-tina", "--quick", "--out", out.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = json(&out.join("report.json"));
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
