//! Stamps hold what makes an output reusable and nothing else: a value an output depends on
//! changes the stamp of its stage and of every stage after it; a value that changes only how
//! it is computed, or where the run lives, changes none.

use resa_pipeline::PipelineFile;
use resa_pipeline::stamp::{STAMP_VERSION, Stage1Stamp, Stage2Stamp};
use resa_qwen2::Hookpoint;

const RUN: &str = r#"
out = "run"
[source]
model = "m"
[target]
model = "m"
[data]
trigger = "t.jsonl"
elicitation = "e.jsonl"
[sae]
mode = "scratch"
hookpoint = "layers.12"
[lora]
[stage2]
lr = 1e-6
"#;

fn file(extra: &[(&str, &str)]) -> PipelineFile {
    let mut text = RUN.to_string();
    for (table, line) in extra {
        text = text.replace(&format!("[{table}]\n"), &format!("[{table}]\n{line}\n"));
    }
    toml::from_str(&text).expect("parses")
}

fn stamps(cfg: &PipelineFile) -> (Stage1Stamp, Stage2Stamp) {
    let s1 = Stage1Stamp::new(cfg, &[cfg.sae.hookpoint]);
    let s2 = Stage2Stamp::new(cfg, s1.clone(), 1);
    (s1, s2)
}

#[test]
fn what_an_output_depends_on_changes_its_stamp_and_the_later_ones() {
    let (s1, s2) = stamps(&file(&[]));
    assert_eq!((s1.version, s2.version), (STAMP_VERSION, STAMP_VERSION));
    // Stage I's values change both stamps.
    for extra in [("sae", "k = 16"), ("data", "ctx_len = 512"), ("data", "split = \"test\""), ("sae", "seed = 3")] {
        let (t1, t2) = stamps(&file(&[extra]));
        assert_ne!(t1, s1, "{extra:?}");
        assert_ne!(t2, s2, "{extra:?}");
    }
    // Stage II's values change Stage II's stamp only.
    for extra in [("stage2", "epochs = 3"), ("stage2", "sae_grad = \"flow\""), ("lora", "r = 8"), ("", "seed = 9")] {
        let cfg = if extra.0.is_empty() {
            toml::from_str(&format!("{}\n{RUN}", extra.1)).expect("parses")
        } else {
            file(&[extra])
        };
        let (t1, t2) = stamps(&cfg);
        assert_eq!(t1, s1, "{extra:?}");
        assert_ne!(t2, s2, "{extra:?}");
    }
    // More nodes: another adapter.
    assert_ne!(Stage2Stamp::new(&file(&[]), s1.clone(), 2), s2);
    // Another set of hookpoints trained together: another Stage I.
    let cfg = file(&[]);
    assert_ne!(Stage1Stamp::new(&cfg, &[Hookpoint::Residual(12), Hookpoint::Residual(13)]), s1);
}

#[test]
fn how_and_where_a_run_computes_change_no_stamp() {
    let (s1, s2) = stamps(&file(&[]));
    let mut moved = file(&[("stage2", "recompute = true"), ("stage2", "merge = true")]);
    moved.out = "elsewhere".into();
    assert_eq!(stamps(&moved), (s1, s2));
}

/// A stamp is JSON with named fields (not a positional tuple), and its version first.
#[test]
fn a_stamp_names_its_fields() {
    let (_, s2) = stamps(&file(&[]));
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s2).expect("json")).expect("parses");
    assert_eq!(json["version"], STAMP_VERSION);
    assert_eq!(json["hookpoint"], "layers.12");
    assert_eq!(json["sae"]["trigger"]["dataset"], "t.jsonl");
    assert_eq!(json["elicitation"]["dataset"], "e.jsonl");
}
