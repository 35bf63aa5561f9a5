//! Every experiment of `configs/` against a machine-readable copy of the paper's Table 1
//! (components), its result tables (per-benchmark Pass@1 and average) and Appendix B (the
//! best Tina checkpoints), written by hand from `../shared/docs/paper-results.md` into
//! `tests/fixtures/paper_table1.json`.

use std::collections::BTreeMap;
use std::path::Path;

use resa::experiments::{Experiment, load_experiments};
use resa::pipeline::pipeline::{ModelRef, ObjectiveKind, SaeMode};

#[derive(serde::Deserialize)]
struct Fixture {
    models: BTreeMap<String, String>,
    experiments: BTreeMap<String, Row>,
    #[serde(rename = "_scores_order")]
    scores_order: Vec<String>,
    tina_best_step: BTreeMap<String, u64>,
    /// Table 6's averages, its 2nd layer first.
    layer_sweep_avgs: Vec<f64>,
    /// Table 6's reasoning-feature counts, layers 2 to 27.
    layer_sweep_feature_counts: Vec<usize>,
}

#[derive(serde::Deserialize)]
struct Row {
    table: String,
    paper_step: Option<u64>,
    source: Option<String>,
    /// The Tina checkpoint of the source when it is not the best one (Table 4's ablation).
    #[serde(default)]
    source_step: Option<u64>,
    target: String,
    trigger: Option<String>,
    elicitation: Option<String>,
    sae_mode: Option<String>,
    avg: Option<f64>,
    scores: Option<Vec<f64>>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/paper_table1.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// The fixture's short name of a model reference: `r1`, `tina-still`, `qwen`, ….
fn short(m: &ModelRef, fx: &Fixture) -> String {
    match &m.adapter {
        // Tina-Yi/R1-Distill-Qwen-1.5B-<DATA>[/checkpoint-N] is tina-<data>.
        Some(a) => match a.split('/').nth(1).and_then(|repo| repo.strip_prefix("R1-Distill-Qwen-1.5B-")) {
            Some(data) => format!("tina-{}", data.to_lowercase()),
            None => format!("adapter {a}"),
        },
        None => fx.models.iter().find(|(_, id)| **id == m.model).map_or(m.model.clone(), |(k, _)| k.clone()),
    }
}

/// A Tina source names the checkpoint the paper used: the row's own step (Table 4's
/// ablation), else the best one (Appendix B).
fn check_tina_step(m: &ModelRef, fx: &Fixture, name: &str, row_step: Option<u64>) {
    if let Some(a) = &m.adapter {
        let key = short(m, fx);
        let Some(step) = row_step.or_else(|| fx.tina_best_step.get(&key).copied()) else { return };
        assert!(a.ends_with(&format!("/checkpoint-{step}")), "{name}: {a} is not {key}'s checkpoint {step}");
    }
}

#[test]
fn every_experiment_matches_the_paper() {
    let fx = fixture();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let experiments: BTreeMap<String, Experiment> =
        load_experiments(&dir).expect("configs").into_iter().map(|e| (e.name.clone(), e)).collect();
    for (name, exp) in &experiments {
        assert!(
            fx.experiments.contains_key(name) || resa::experiments::results_table(&exp.table).is_none(),
            "configs/{name}.toml claims {} but the fixture has no such row",
            exp.table
        );
    }
    let sweep = &experiments["layer-sweep"];
    assert_eq!(sweep.paper_layers.len(), 26);
    for (i, avg) in fx.layer_sweep_avgs.iter().enumerate() {
        assert_eq!(sweep.paper_layers.get(&format!("layers.{}", i + 1)), Some(avg), "Table 6, layer {}", i + 2);
    }
    assert_eq!(sweep.paper_feature_counts.len(), 26);
    for (i, n) in fx.layer_sweep_feature_counts.iter().enumerate() {
        let key = format!("layers.{}", i + 1);
        assert_eq!(sweep.paper_feature_counts.get(&key), Some(n), "Table 6 features, layer {}", i + 2);
    }
    for (name, row) in &fx.experiments {
        let exp = experiments.get(name).unwrap_or_else(|| panic!("configs/{name}.toml is missing"));
        // Where the paper reports it, its numbers and the checkpoint behind them.
        assert_eq!(resa::experiments::results_table(&exp.table).as_deref(), Some(row.table.as_str()), "{name}: table");
        assert_eq!(exp.paper_step, row.paper_step, "{name}: paper_step (Appendix B)");
        assert_eq!(exp.paper.get("average").copied(), row.avg, "{name}: average");
        if let Some(scores) = &row.scores {
            for (bench, v) in fx.scores_order.iter().zip(scores) {
                assert_eq!(exp.paper.get(bench), Some(v), "{name}: {bench}");
            }
        }
        // The components.
        let eval_model = exp.eval_model().expect("eval model");
        check_tina_step(&eval_model, &fx, name, None);
        match exp.pipeline(Path::new("runs")).expect("tune") {
            None => {
                assert_eq!(short(&eval_model, &fx), row.target, "{name}: evaluated model");
                assert!(row.source.is_none() && row.sae_mode.is_none(), "{name}: the paper trains this one");
            }
            Some(cfg) => {
                check_tina_step(&cfg.source, &fx, name, row.source_step);
                assert_eq!(short(&cfg.target, &fx), row.target, "{name}: target");
                assert_eq!(Some(&cfg.data.elicitation), row.elicitation.as_ref(), "{name}: elicitation");
                let mode = match (cfg.stage2.objective, cfg.sae.mode) {
                    (ObjectiveKind::Sft, _) => None,
                    (_, SaeMode::Scratch) => Some("scratch"),
                    (_, SaeMode::Finetune) => Some("finetune"),
                    (_, SaeMode::Pretrained) => Some("pretrained"),
                };
                assert_eq!(mode, row.sae_mode.as_deref(), "{name}: SAE mode");
                // A pre-trained SAE (and the SFT baseline) has no Stage I: Table 1 lists no
                // source and no trigger data; the file's are unused.
                if mode.is_some() && mode != Some("pretrained") {
                    assert_eq!(Some(short(&cfg.source, &fx)), row.source, "{name}: source");
                    assert_eq!(Some(&cfg.data.trigger), row.trigger.as_ref(), "{name}: trigger");
                } else {
                    assert!(row.source.is_none() && row.trigger.is_none(), "{name}: Table 1 has a source");
                }
            }
        }
    }
}

/// `resa reproduce --list --json`: one object per experiment with the stable fields.
#[test]
fn list_json_has_the_stable_fields() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resa"))
        .args(["reproduce", "--list", "--json", "--configs"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"))
        .output()
        .expect("runs resa");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let fx = fixture();
    assert!(rows.len() >= fx.experiments.len());
    for r in &rows {
        for key in [
            "name",
            "table",
            "paper_avg",
            "paper_step",
            "source",
            "target",
            "trigger",
            "elicitation",
            "sae_mode",
            "hookpoint",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    let by_name = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("{n} not listed"));
    let v1 = by_name("resa-still-v1");
    assert_eq!(v1["table"], "3,4", "the paper reports Resa-STILL-v1 in Tables 3 and 4");
    assert_eq!(v1["paper_avg"], 47.28);
    assert_eq!(v1["paper_step"], 2000);
    assert_eq!(v1["sae_mode"], "finetune");
    assert_eq!(v1["hookpoint"], "layers.12");
    assert!(v1["source"].as_str().expect("source").ends_with("-STILL/checkpoint-2000"), "{v1}");
    let v2 = by_name("resa-still-v2");
    assert_eq!(
        (v2["sae_mode"].as_str(), v2["source"].is_null(), v2["trigger"].is_null()),
        (Some("pretrained"), true, true)
    );
    let r1 = by_name("r1-distill");
    assert_eq!((r1["source"].is_null(), r1["sae_mode"].is_null(), r1["table"].as_str()), (true, true, Some("3")));
    // Table 6: one row per layer, with the layer's score and feature count.
    let layers: Vec<&serde_json::Value> = rows.iter().filter(|r| r["table"] == "6").collect();
    assert_eq!(layers.len(), 26, "{layers:?}");
    assert!(
        layers.iter().all(|r| r["name"] == "layer-sweep" && r["hookpoints"].as_array().is_some_and(|h| h.len() == 26))
    );
    let l14 = layers.iter().find(|r| r["hookpoint"] == "layers.14").expect("layers.14");
    assert_eq!((l14["paper_avg"].as_f64(), l14["paper_feature_count"].as_u64()), (Some(48.97), Some(3)), "{l14}");
    let hookpoints: std::collections::BTreeSet<&str> =
        layers.iter().map(|r| r["hookpoint"].as_str().expect("hp")).collect();
    assert_eq!(hookpoints.len(), 26);
    // Tables 3 and 4 list Resa-STILL-v1 each.
    let in_table =
        |t: &str| rows.iter().filter(|r| r["table"].as_str().is_some_and(|x| x.split(',').any(|p| p == t))).count();
    assert!(in_table("3") >= 9 && in_table("4") >= 19, "Table 3: {}, Table 4: {}", in_table("3"), in_table("4"));
}
