//! Kill and resume: a run interrupted after a checkpoint and resumed ends with exactly the
//! adapter of an uninterrupted run (CPU backend, dropout on). Its own test binary, so no
//! other test draws from the backend's global random generator meanwhile.

use resa_tune::{SaeGrad, SaeTuning, TuneConfig, train_adapters};

mod common;

use common::*;

/// The runs of this file: two epochs of 6 chunks, 2 micro-batches a step, a checkpoint
/// every 2 steps.
fn settings() -> TuneConfig {
    TuneConfig { lr: 5e-3, epochs: 2, grad_accum: 2, save_every: 2, ..TuneConfig::default() }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_adapter() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let data = chunks(6, 12);
    let base = settings();
    let whole = TuneConfig { out: tmp.path().join("whole"), ..base.clone() };
    train_adapters(model(&lora()), &lora(), &objective, &data, &whole, &mut |_| true).expect("whole");
    let split = TuneConfig { out: tmp.path().join("split"), ..base.clone() };
    let (_, r) = train_adapters(model(&lora()), &lora(), &objective, &data, &split, &mut |m| m.step < 4).expect("part");
    assert_eq!(r.steps, 4);
    assert!(!split.out.join("adapter").exists(), "interrupted: no final adapter yet");
    let resumed = TuneConfig { resume: true, ..split.clone() };
    let (_, r) = train_adapters(model(&lora()), &lora(), &objective, &data, &resumed, &mut |_| true).expect("rest");
    assert_eq!(r.steps, 6);
    let (a, b) = (adapter_values(&whole.out.join("adapter")), adapter_values(&split.out.join("adapter")));
    let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(a.len() == b.len() && diff == 0.0, "resumed adapter differs by {diff}");
    // Every step is in metrics.jsonl once, in order.
    let steps: Vec<u64> = std::fs::read_to_string(split.out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    // In the same test: the backend's generator (dropout masks) is global, so runs of this
    // file must not overlap.
    a_resume_from_an_earlier_checkpoint_drops_the_repeated_metrics();
    a_damaged_checkpoint_is_passed_over_for_the_previous_one(&a);
}

/// A flipped byte in the newest checkpoint's adapter: the resume says so, starts from the
/// checkpoint before it, and still ends with the uninterrupted run's adapter (`whole`).
fn a_damaged_checkpoint_is_passed_over_for_the_previous_one(whole: &[f32]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let data = chunks(6, 12);
    let cfg = TuneConfig { out: tmp.path().join("run"), ..settings() };
    train_adapters(model(&lora()), &lora(), &objective, &data, &cfg, &mut |m| m.step < 4).expect("part");
    let newest = cfg.out.join("checkpoint-4");
    assert!(newest.join("resa-manifest.json").is_file() && cfg.out.join("checkpoint-2").is_dir());
    let weights = newest.join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("weights");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).expect("damage");
    // Loading it is refused, naming the file.
    let mut m = model(&lora());
    resa_lora::remove(&mut m);
    let err = resa_lora::load_adapter(&mut m, &newest).expect_err("a damaged adapter").to_string();
    assert!(err.contains("adapter_model.safetensors") && err.contains("hash"), "{err}");
    let resumed = TuneConfig { resume: true, ..cfg.clone() };
    let (_, r) = train_adapters(model(&lora()), &lora(), &objective, &data, &resumed, &mut |_| true).expect("rest");
    assert_eq!(r.steps, 6);
    let b = adapter_values(&cfg.out.join("adapter"));
    let diff = whole.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(whole.len() == b.len() && diff == 0.0, "resumed past a damaged checkpoint, the adapter differs by {diff}");
}

/// Killed between two checkpoints: the steps after the last one are run again, and their
/// earlier lines are dropped from `metrics.jsonl`.
fn a_resume_from_an_earlier_checkpoint_drops_the_repeated_metrics() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let data = chunks(6, 12);
    let cfg = TuneConfig { out: tmp.path().join("run"), ..settings() };
    // Killed after step 3: the last checkpoint is step 2, the metrics already hold step 3.
    train_adapters(model(&lora()), &lora(), &objective, &data, &cfg, &mut |m| m.step < 3).expect("part");
    let resumed = TuneConfig { resume: true, ..cfg.clone() };
    train_adapters(model(&lora()), &lora(), &objective, &data, &resumed, &mut |_| true).expect("rest");
    let steps: Vec<u64> = std::fs::read_to_string(cfg.out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6], "step 3 once");
}
