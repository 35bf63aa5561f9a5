//! Stage I end to end: the tiny Qwen2 fixture model and the token ids sparsify's Trainer
//! was run on (`scripts/reference/sae_reference.py`).

mod common;

use std::path::PathBuf;

use common::*;
use resa_qwen2::{Hookpoint, Qwen2ForCausalLM};
use resa_sae::{Error, OptimizerKind, SaeInit, SparseCoder, Stage1Options, TrainConfig, train_saes};

fn model() -> Qwen2ForCausalLM<B> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../resa-qwen2/tests/fixtures/tied_gqa_f32_old");
    Qwen2ForCausalLM::from_pretrained(dir, &Default::default(), burn::tensor::DType::F32).expect("model")
}

fn chunks() -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(fixtures().join("input_ids.json")).expect("ids");
    serde_json::from_str(&text).expect("ids json")
}

fn adam_options(out: PathBuf) -> Stage1Options {
    Stage1Options {
        hookpoints: vec![Hookpoint::Residual(1), Hookpoint::Mlp(2)],
        init: SaeInit::Finetune(fixtures().join("adam/init")),
        train: TrainConfig { optimizer: OptimizerKind::Adam, lr_warmup_steps: 2, ..TrainConfig::default() },
        batch_size: 2,
        save_every: 1000,
        max_steps: None,
        out,
        resume: false,
    }
}

fn assert_same_saes(a: &std::path::Path, b: &std::path::Path, tol: f32) {
    let device = Default::default();
    for hp in ["layers.1", "layers.2.mlp"] {
        let x = SparseCoder::<B>::load(a.join(hp), &device).expect("SAE a");
        let y = SparseCoder::<B>::load(b.join(hp), &device).expect("SAE b");
        assert_eq!(x.config(), y.config());
        assert_close(&format!("{hp} encoder"), x.encoder_weight, y.encoder_weight, tol);
        assert_close(&format!("{hp} W_dec"), x.w_dec, y.w_dec, tol);
        assert_close(&format!("{hp} encoder bias"), x.encoder_bias, y.encoder_bias, tol);
        assert_close(&format!("{hp} b_dec"), x.b_dec, y.b_dec, tol);
    }
}

#[test]
fn stage1_from_model_and_token_ids_matches_sparsify() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let report = train_saes::<AD>(&model(), &chunks(), &adam_options(out.clone())).expect("stage I");
    assert_eq!(report.steps, 4);
    assert_eq!(report.tokens, 4 * 2 * 16);
    // Model activations agree with transformers to ~1e-6, so the trained SAEs agree closely.
    assert_same_saes(&out, &fixtures().join("adam/final"), 1e-4);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 8, "one line per hookpoint and step");
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().expect("line")).expect("json");
    for key in ["step", "hookpoint", "fvu", "dead_fraction", "tokens_per_second"] {
        assert!(first.get(key).is_some(), "metrics line lacks {key}: {first}");
    }
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_saes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole");
    train_saes::<AD>(&model(), &chunks(), &adam_options(whole.clone())).expect("uninterrupted");
    let split = tmp.path().join("split");
    let first = Stage1Options { max_steps: Some(2), save_every: 1, ..adam_options(split.clone()) };
    train_saes::<AD>(&model(), &chunks(), &first).expect("first half");
    let rest = Stage1Options { resume: true, ..adam_options(split.clone()) };
    let report = train_saes::<AD>(&model(), &chunks(), &rest).expect("second half");
    assert_eq!(report.tokens, 2 * 2 * 16, "the resumed run does only the remaining steps");
    assert_same_saes(&whole, &split, 0.0);
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let good = Stage1Options { max_steps: Some(1), ..adam_options(out.clone()) };
    train_saes::<AD>(&model(), &chunks(), &good).expect("good run");
    let before = std::fs::read(out.join("layers.1/sae.safetensors")).expect("saved");

    // An SAE with a NaN bias is refused when it loads, before any step.
    let device = Default::default();
    let nan_init = tmp.path().join("nan");
    let huge_init = tmp.path().join("huge");
    for hp in ["layers.1", "layers.2.mlp"] {
        let mut sae = SparseCoder::<B>::load(fixtures().join("adam/init").join(hp), &device).expect("init");
        let b_dec = sae.b_dec.clone();
        sae.b_dec = b_dec.clone() * f32::NAN;
        sae.save(nan_init.join(hp)).expect("save");
        // Finite but huge: the reconstruction error overflows f32 at the first step.
        sae.b_dec = (b_dec + 1.0) * 1e30;
        sae.save(huge_init.join(hp)).expect("save");
    }
    let bad = Stage1Options { init: SaeInit::Finetune(nan_init), ..adam_options(out.clone()) };
    match train_saes::<AD>(&model(), &chunks(), &bad) {
        Err(Error::Tensors(resa_qwen2::Error::NonFinite { key, .. })) => assert_eq!(key, "b_dec"),
        other => panic!("expected NonFinite at load, got {other:?}"),
    }
    assert_eq!(std::fs::read(out.join("layers.1/sae.safetensors")).expect("kept"), before);
    // A run whose loss becomes infinite stops at that step.
    let bad = Stage1Options { init: SaeInit::Finetune(huge_init), ..adam_options(out.clone()) };
    match train_saes::<AD>(&model(), &chunks(), &bad) {
        Err(Error::NonFiniteLoss { step: 0, hookpoint, .. }) => assert_eq!(hookpoint, "layers.1"),
        other => panic!("expected NonFiniteLoss, got {other:?}"),
    }
    assert_eq!(std::fs::read(out.join("layers.1/sae.safetensors")).expect("kept"), before);
}

#[test]
fn rejects_an_sae_for_another_width() {
    let tmp = tempfile::tempdir().expect("tmp");
    let device = Default::default();
    let init = tmp.path().join("init");
    let sae = SparseCoder::<B>::random(resa_sae::SaeConfig::new(32, 64, 4), 0, &device).expect("sae");
    sae.save(init.join("layers.1")).expect("save");
    let opts = Stage1Options {
        hookpoints: vec![Hookpoint::Residual(1)],
        init: SaeInit::Finetune(init),
        ..adam_options(tmp.path().join("out"))
    };
    let err = train_saes::<AD>(&model(), &chunks(), &opts).expect_err("width mismatch");
    assert!(matches!(err, resa_sae::Error::Width { d_in: 32, width: 64 }), "{err}");
}

#[test]
fn rejects_a_hookpoint_past_the_last_layer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = Stage1Options { hookpoints: vec![Hookpoint::Residual(3)], ..adam_options(tmp.path().join("o")) };
    let err = train_saes::<AD>(&model(), &chunks(), &opts).expect_err("bad layer");
    assert!(err.to_string().contains("layers.3"), "{err}");
}

#[test]
fn rejects_a_hookpoint_named_twice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = Stage1Options {
        hookpoints: vec![Hookpoint::Residual(1), Hookpoint::Mlp(2), Hookpoint::Residual(1)],
        ..adam_options(tmp.path().join("o"))
    };
    let err = train_saes::<AD>(&model(), &chunks(), &opts).expect_err("duplicate");
    assert!(err.to_string().contains("named twice"), "{err}");
}

#[test]
fn an_older_layout_is_not_resumed_but_started_over() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    std::fs::create_dir_all(out.join("state/layers.1")).expect("mkdir");
    std::fs::write(out.join("stage1.json"), "{\"step\": 3}").expect("old manifest");
    std::fs::write(out.join("state/layers.1/train_state.json"), "{}").expect("old state");
    let opts = Stage1Options { resume: true, ..adam_options(out.clone()) };
    let report = train_saes::<AD>(&model(), &chunks(), &opts).expect("starts over");
    assert_eq!((report.steps, report.tokens), (4, 4 * 2 * 16), "every step run");
    assert!(!out.join("stage1.json").exists() && !out.join("state").exists(), "the old files are gone");
    assert_same_saes(&out, &fixtures().join("adam/final"), 1e-4);
}
