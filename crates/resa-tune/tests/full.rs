//! Full-parameter training: every weight moves, the loss falls on data it can learn, and
//! two runs with the same seed give the same weights.

mod common;

use burn::tensor::DType;
use common::{AD, root};
use resa_qwen2::Qwen2ForCausalLM;
use resa_tune::full::{FullTrainConfig, train_full};
use resa_tune::{LrSchedule, StepMetrics};

fn base() -> Qwen2ForCausalLM<AD> {
    Qwen2ForCausalLM::<AD>::from_pretrained(
        root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old"),
        &Default::default(),
        DType::F32,
    )
    .expect("model")
}

/// A repeating pattern a small model learns in a few steps.
fn pattern_chunks(n: usize, len: usize) -> Vec<Vec<u32>> {
    (0..n).map(|i| (0..len).map(|j| 10 + ((i + j) % 7) as u32).collect()).collect()
}

fn weights(m: &Qwen2ForCausalLM<AD>) -> Vec<f32> {
    let plain = burn::module::AutodiffModule::valid(m);
    plain
        .linears()
        .into_iter()
        .flat_map(|(_, l)| l.weight.val().into_data().iter::<f32>().collect::<Vec<_>>())
        .collect()
}

fn train(steps: u64, max_grad_norm: f64) -> (Qwen2ForCausalLM<AD>, Vec<StepMetrics>) {
    let cfg = FullTrainConfig {
        lr: 1e-2,
        schedule: LrSchedule::Constant,
        steps,
        batch_size: 4,
        max_grad_norm,
        ..FullTrainConfig::default()
    };
    let mut seen = Vec::new();
    let m = train_full(base(), &pattern_chunks(16, 24), &cfg, &mut |m| {
        seen.push(m.clone());
        true
    })
    .expect("trains");
    (m, seen)
}

#[test]
fn every_weight_trains_and_the_loss_falls() {
    let before = weights(&base());
    let (m, seen) = train(12, 1.0);
    let after = weights(&m);
    assert_eq!(seen.len(), 12);
    let first = seen[0].loss;
    let last = seen[11].loss;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    // Every linear weight matrix moved (no frozen base as with LoRA).
    let plain_before = burn::module::AutodiffModule::valid(&base());
    let plain_after = burn::module::AutodiffModule::valid(&m);
    for ((name, a), (_, b)) in plain_before.linears().into_iter().zip(plain_after.linears()) {
        let d = (a.weight.val() - b.weight.val()).abs().max().into_scalar();
        assert!(d > 0.0, "{name} did not change");
    }
    assert_ne!(before, after);
}

#[test]
fn same_seed_same_weights() {
    let (a, _) = train(3, 1.0);
    let (b, _) = train(3, 1.0);
    assert_eq!(weights(&a), weights(&b));
}

#[test]
fn bad_data_is_refused() {
    let cfg = FullTrainConfig { batch_size: 4, ..FullTrainConfig::default() };
    let e = train_full(base(), &pattern_chunks(2, 8), &cfg, &mut |_| true).expect_err("must fail").to_string();
    assert!(e.contains("cannot fill a batch of 4"), "{e}");
    let mut chunks = pattern_chunks(8, 8);
    chunks[3].push(1);
    let e = train_full(base(), &chunks, &cfg, &mut |_| true).expect_err("must fail").to_string();
    assert!(e.contains("chunk 3 has 9 tokens"), "{e}");
}
