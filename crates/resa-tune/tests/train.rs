//! The training loop on the tiny fixture model: the loss really goes down (Stage II and
//! SFT), a diverging run stops with the last checkpoint kept, setup errors are typed.
//! (Resuming is tested in `resume.rs`, a process of its own: dropout draws from the
//! backend's global generator, which parallel tests would share.)

use std::path::Path;

use burn::tensor::DType;
use resa_qwen2::{Hookpoint, Qwen2ForCausalLM};
use resa_sae::SparseCoder;
use resa_tune::{Error, Objective, SaeGrad, SaeTuning, Sft, TuneConfig, train_adapters};

mod common;

use common::*;

#[test]
fn stage2_kl_goes_down() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let cfg =
        TuneConfig { lr: 1e-2, epochs: 4, save_every: 1000, out: tmp.path().join("run"), ..TuneConfig::default() };
    let data = chunks(8, 16);
    let (_, report) = train_adapters(model(&lora()), &lora(), &objective, &data, &cfg, &mut |_| true).expect("train");
    let (first, last) = (report.first_loss.expect("first"), report.last_loss.expect("last"));
    assert_eq!(report.steps, 32);
    assert!(last < 0.6 * first, "KL {first} → {last}");
    assert!(report.adapter.join("adapter_model.safetensors").is_file());
    let lines = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 32);
    assert!(tmp.path().join("run/checkpoint-32/optimizer.safetensors").is_file(), "final checkpoint");
}

#[test]
fn sft_cross_entropy_goes_down() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg =
        TuneConfig { lr: 1e-2, epochs: 6, save_every: 1000, out: tmp.path().join("run"), ..TuneConfig::default() };
    let data = chunks(4, 16);
    let (_, report) = train_adapters(model(&lora()), &lora(), &Sft, &data, &cfg, &mut |_| true).expect("train");
    let (first, last) = (report.first_loss.expect("first"), report.last_loss.expect("last"));
    assert!(last < 0.8 * first, "CE {first} → {last}");
}

/// A downstream objective: the SFT loss scaled by a constant, refusing models with fewer
/// than `min_layers` layers. Scaling the loss scales the step's gradient, which Adam then
/// normalises away, so the recorded losses are exactly `scale ×` those of [`Sft`].
struct ScaledSft {
    scale: f64,
    min_layers: usize,
}

impl<B: burn::tensor::backend::AutodiffBackend> Objective<B> for ScaledSft {
    fn name(&self) -> &'static str {
        "scaled-sft"
    }

    fn check(&self, model: &Qwen2ForCausalLM<B>) -> resa_tune::Result<()> {
        if model.config().num_hidden_layers < self.min_layers {
            return Err(Error::Objective {
                objective: "scaled-sft",
                message: format!("needs {} layers", self.min_layers),
            });
        }
        Ok(())
    }

    fn loss(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: burn::tensor::Tensor<B, 2, burn::tensor::Int>,
        adapters: resa_qwen2::AdapterMode,
    ) -> resa_tune::Result<burn::tensor::Tensor<B, 1>> {
        Ok(Objective::<B>::loss(&Sft, model, input_ids, adapters)?.mul_scalar(self.scale))
    }

    fn to_device(&self, _device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(ScaledSft { scale: self.scale, min_layers: self.min_layers })
    }
}

#[test]
fn a_downstream_objective_trains_through_the_same_loop() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = |name: &str| TuneConfig {
        lr: 1e-2,
        epochs: 2,
        save_every: 1000,
        max_grad_norm: 0.0,
        out: tmp.path().join(name),
        ..TuneConfig::default()
    };
    let data = chunks(4, 16);
    // No dropout: its masks come from the backend's global generator, which the other tests
    // of this file draw from concurrently.
    let lora = resa_lora::LoraConfig::new(4, 16.0, 0.0, &resa_lora::ALL_LINEAR);
    let mut sft = Vec::new();
    train_adapters(model(&lora), &lora, &Sft, &data, &cfg("sft"), &mut |m| {
        sft.push(m.loss);
        true
    })
    .expect("sft");
    let mut scaled = Vec::new();
    let objective = ScaledSft { scale: 3.0, min_layers: 1 };
    train_adapters(model(&lora), &lora, &objective, &data, &cfg("scaled"), &mut |m| {
        scaled.push(m.loss);
        true
    })
    .expect("scaled");
    assert_eq!(sft.len(), scaled.len());
    for (a, b) in sft.iter().zip(&scaled) {
        assert!((3.0 * a - b).abs() <= 1e-3 * b.abs().max(1.0), "3 × {a} vs {b}");
    }
    // Its check runs before any work: nothing is written.
    let refused = ScaledSft { scale: 1.0, min_layers: 99 };
    let err = train_adapters(model(&lora), &lora, &refused, &data, &cfg("refused"), &mut |_| true)
        .expect_err("too few layers");
    assert!(err.to_string().contains("needs 99 layers"), "{err}");
    assert!(!tmp.path().join("refused").exists());
}

fn adapter_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("adapter_model.safetensors")).expect("adapter")
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let cfg = TuneConfig { lr: 1e-3, epochs: 1, save_every: 1, out: out.clone(), ..TuneConfig::default() };
    let data = chunks(2, 8);
    train_adapters(model(&lora()), &lora(), &objective, &data, &cfg, &mut |_| true).expect("good");
    let kept = adapter_bytes(&out.join("checkpoint-2"));
    let mut bad = sae.clone();
    bad.b_dec = bad.b_dec.clone() * f32::NAN;
    let objective = SaeTuning::new(&bad, at(1), SaeGrad::Detach);
    match train_adapters(model(&lora()), &lora(), &objective, &data, &cfg, &mut |_| true) {
        Err(Error::NonFiniteLoss { step: 0, .. }) => {}
        other => panic!("expected NonFiniteLoss, got {:?}", other.map(|(_, r)| r)),
    }
    assert_eq!(adapter_bytes(&out.join("checkpoint-2")), kept);
    // The failing step is in metrics.jsonl (its loss is not a number: null).
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 1, "{metrics}");
    assert_eq!(lines[0]["step"], 1);
    assert!(lines[0]["loss"].is_null() || lines[0]["grad_norm"].is_null(), "{metrics}");
}

#[test]
fn setup_errors_are_typed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = TuneConfig { out: tmp.path().join("o"), ..TuneConfig::default() };
    let narrow = SparseCoder::<AD>::random(resa_sae::SaeConfig::new(32, 64, 4), 0, &Default::default()).expect("sae");
    let objective = SaeTuning::new(&narrow, at(1), SaeGrad::Detach);
    let err = train_adapters(model(&lora()), &lora(), &objective, &chunks(2, 8), &cfg, &mut |_| true)
        .map(|(_, r)| r)
        .expect_err("width");
    assert!(matches!(err, Error::Sae(resa_sae::Error::Width { d_in: 32, width: 64 })), "{err}");
    // A hookpoint checked against a deeper model is refused before the first step.
    let sae = sae();
    let deeper = Hookpoint::Residual(5).within(8).expect("in range of a deeper model");
    let objective = SaeTuning::new(&sae, deeper, SaeGrad::Detach);
    let err = train_adapters(model(&lora()), &lora(), &objective, &chunks(2, 8), &cfg, &mut |_| true)
        .map(|(_, r)| r)
        .expect_err("layer");
    assert!(err.to_string().contains("layers.5") && err.to_string().contains("8 layers"), "{err}");
    let mut bare = Qwen2ForCausalLM::<AD>::from_pretrained(
        root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old"),
        &Default::default(),
        DType::F32,
    )
    .expect("model");
    resa_lora::remove(&mut bare);
    let err = train_adapters(bare, &lora(), &Sft, &chunks(2, 8), &cfg, &mut |_| true)
        .map(|(_, r)| r)
        .expect_err("no adapter");
    assert!(err.to_string().contains("no adapter"), "{err}");
}

/// A hookpoint is checked once, against a model's depth; a hookpoint checked against another
/// model is a typed hookpoint error, whichever loss is called.
#[test]
fn a_hookpoint_for_another_model_is_a_typed_error_from_either_loss() {
    use burn::tensor::{Int, Tensor, TensorData};
    use resa_qwen2::AdapterMode;
    let device = Default::default();
    let sae = sae();
    let m = model(&lora());
    let layers = m.config().num_hidden_layers;
    let ids = || Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![1i64; 8], [1, 8]), &device);
    let deeper = Hookpoint::Residual(layers).within(layers + 1).expect("in range of a deeper model");
    let plain =
        resa_tune::stage2_loss(&m, &sae, deeper, SaeGrad::Detach, ids(), AdapterMode::Train(0), resa_tune::Head::Full);
    let shared =
        resa_tune::stage2_loss_shared_prefix(&m, &sae, deeper, ids(), AdapterMode::Train(0), resa_tune::Head::Full);
    for (name, result) in [("plain", plain), ("shared prefix", shared)] {
        match result {
            Err(Error::Model(resa_qwen2::Error::Hookpoint { name: hp, .. })) => {
                assert_eq!(hp, format!("layers.{layers}"))
            }
            Err(other) => panic!("{name}: {other}"),
            Ok(_) => panic!("{name}: a hookpoint past the model was accepted"),
        }
    }
}
