//! Data parallel: two replicas (sharing the one CPU device here; one GPU each on CUDA) give
//! the adapter of one device accumulating the same micro-batches, for both objectives; a
//! data-parallel run resumes exactly; a checkpoint of another replica count is refused.
//! Dropout is on (0.1): each micro-batch's masks are keyed by the run's seed and the
//! micro-batch, so replicas drawing at the same time draw what one device would.

use resa_lora::LoraConfig;
use resa_tune::{Error, Objective, SaeGrad, SaeTuning, Sft, TuneConfig, train_adapters};

mod common;

use common::*;

fn with_dropout() -> LoraConfig {
    LoraConfig::new(4, 16.0, 0.1, &resa_lora::ALL_LINEAR)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn compare(objective: &dyn Objective<AD>, name: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = chunks(8, 12);
    let base = TuneConfig { lr: 5e-3, epochs: 1, save_every: 100, ..TuneConfig::default() };
    let one = TuneConfig { out: tmp.path().join("one"), grad_accum: 2, ..base.clone() };
    let two = TuneConfig { out: tmp.path().join("two"), data_parallel: 2, ..base.clone() };
    let lora = with_dropout();
    let mut losses = (Vec::new(), Vec::new());
    let (_, r1) = train_adapters(model(&lora), &lora, objective, &data, &one, &mut |m| {
        losses.0.push((m.loss, m.tokens));
        true
    })
    .expect("one device");
    let (_, r2) = train_adapters(model(&lora), &lora, objective, &data, &two, &mut |m| {
        losses.1.push((m.loss, m.tokens));
        true
    })
    .expect("two replicas");
    assert_eq!((r1.steps, r2.steps), (4, 4), "{name}: 8 chunks in steps of 2");
    for ((l1, t1), (l2, t2)) in losses.0.iter().zip(&losses.1) {
        assert_eq!(t1, t2, "{name}: tokens per step");
        assert!((l1 - l2).abs() <= 1e-6 * l1.abs().max(1.0), "{name}: loss {l1} vs {l2}");
    }
    let (a, b) = (adapter_values(&r1.adapter), adapter_values(&r2.adapter));
    let diff = max_diff(&a, &b);
    assert!(diff <= 1e-6, "{name}: two replicas differ from one device accumulating by {diff}");
}

#[test]
fn two_replicas_equal_one_device_accumulating_stage2() {
    let sae = sae();
    compare(&SaeTuning::new(&sae, at(1), SaeGrad::StraightThrough), "stage II");
}

#[test]
fn two_replicas_equal_one_device_accumulating_sft() {
    compare(&Sft, "sft");
}

#[test]
fn a_data_parallel_run_resumes_exactly_and_refuses_another_replica_count() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = sae();
    let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach);
    let data = chunks(8, 12);
    let lora = with_dropout();
    let base = TuneConfig { lr: 5e-3, epochs: 2, data_parallel: 2, save_every: 2, ..TuneConfig::default() };
    let whole = TuneConfig { out: tmp.path().join("whole"), ..base.clone() };
    train_adapters(model(&lora), &lora, &objective, &data, &whole, &mut |_| true).expect("whole");
    let split = TuneConfig { out: tmp.path().join("split"), ..base.clone() };
    let (_, r) = train_adapters(model(&lora), &lora, &objective, &data, &split, &mut |m| m.step < 4).expect("part");
    assert_eq!(r.steps, 4);
    let other = TuneConfig { resume: true, data_parallel: 1, grad_accum: 2, ..split.clone() };
    match train_adapters(model(&lora), &lora, &objective, &data, &other, &mut |_| true) {
        Err(Error::Resume { message, .. }) => assert!(message.contains("replicas"), "{message}"),
        other => panic!("expected a resume error, got {:?}", other.map(|(_, r)| r)),
    }
    let resumed = TuneConfig { resume: true, ..split.clone() };
    let (_, r) = train_adapters(model(&lora), &lora, &objective, &data, &resumed, &mut |_| true).expect("rest");
    assert_eq!(r.steps, 8);
    let diff = max_diff(&adapter_values(&whole.out.join("adapter")), &adapter_values(&split.out.join("adapter")));
    assert!(diff == 0.0, "resumed data-parallel adapter differs by {diff}");
}

/// SFT, except that a micro-batch whose first token is `bad` fails (the error) or diverges (NaN).
struct FailsOn {
    bad: i64,
    nan: bool,
}

impl Objective<AD> for FailsOn {
    fn name(&self) -> &'static str {
        "fails-on"
    }
    fn loss(
        &self,
        model: &resa_qwen2::Qwen2ForCausalLM<AD>,
        ids: burn::tensor::Tensor<AD, 2, burn::tensor::Int>,
        adapters: resa_qwen2::AdapterMode,
    ) -> resa_tune::Result<burn::tensor::Tensor<AD, 1>> {
        let first = ids.clone().into_data().iter::<i64>().next().unwrap_or(0);
        let loss = Sft.loss(model, ids, adapters)?;
        match (first == self.bad, self.nan) {
            (false, _) => Ok(loss),
            (true, true) => Ok(loss * f32::NAN),
            (true, false) => Err(Error::Objective { objective: "fails-on", message: "this micro-batch fails".into() }),
        }
    }
    fn to_device(&self, _device: &burn::tensor::Device<AD>) -> Box<dyn Objective<AD> + '_> {
        Box::new(FailsOn { bad: self.bad, nan: self.nan })
    }
}

#[test]
fn a_failing_replica_stops_the_run_instead_of_leaving_the_other_waiting() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut data = chunks(4, 12);
    for c in &mut data {
        c[0] = 5;
    }
    // One chunk is marked: in the step that holds it, the replica that gets it fails alone.
    data[1][0] = 7;
    let lora = with_dropout();
    for nan in [false, true] {
        let cfg = TuneConfig {
            epochs: 1,
            data_parallel: 2,
            out: tmp.path().join(format!("run-{nan}")),
            ..TuneConfig::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (l, d) = (lora.clone(), data.clone());
        std::thread::spawn(move || {
            let r = train_adapters(model(&l), &l, &FailsOn { bad: 7, nan }, &d, &cfg, &mut |_| true);
            let _ = tx.send(r.map(|(_, r)| r.steps));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(120)).expect("the run ends instead of waiting") {
            Err(Error::Objective { message, .. }) if !nan => {
                assert!(message.contains("this micro-batch fails"), "{message}")
            }
            Err(Error::NonFiniteLoss { .. }) if nan => {}
            other => panic!("nan={nan}: expected the replica's error, got {other:?}"),
        }
    }
}
