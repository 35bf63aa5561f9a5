//! Stage II with the student's layers recomputed in the backward
//! (`stage2_gradients_recomputed`, `SaeTuning::with_recompute`) gives the loss, the adapter
//! gradients and the trained adapter of the plain backward, with dropout on, for the whole
//! head and the head in pieces; and it is refused where the student does not start at the
//! hookpoint.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use resa_qwen2::AdapterMode;
use resa_tune::{
    Error, Head, Objective, SaeGrad, SaeTuning, TuneConfig, stage2_gradients_recomputed, stage2_loss_shared_prefix,
    train_adapters,
};

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    let a = if a.is_empty() { vec![0.0; b.len()] } else { a.to_vec() };
    let b = if b.is_empty() { vec![0.0; a.len()] } else { b.to_vec() };
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

#[test]
fn recomputed_layers_give_the_plain_loss_gradients_and_adapter() {
    let device = Default::default();
    let sae = sae();
    let lora = lora(); // dropout 0.05: the recomputed layers must draw the same masks
    // Adapters above the hookpoint have moved (B ≠ 0), so every student layer matters.
    let m = model_moved_above(&lora, 1);
    assert!(m.config().num_hidden_layers >= 3, "at least two student layers after layers.1");

    let ids: Vec<i64> = chunks(2, 12).into_iter().flatten().map(i64::from).collect();
    let ids = Tensor::<AD, 2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    for head in [Head::Full, Head::Chunked(5)] {
        let loss = stage2_loss_shared_prefix(&m, &sae, at(1), ids.clone(), AdapterMode::Train(7), head).expect("loss");
        let plain = loss.clone().into_scalar();
        let plain_grads = adapter_grads(&m, &loss.div_scalar(2.0).backward());
        let (value, grads) =
            stage2_gradients_recomputed(&m, &sae, at(1), ids.clone(), AdapterMode::Train(7), head, 2.0)
                .expect("recomputed");
        let grads = adapter_grads(&m, &grads);
        assert!((plain - value).abs() <= 1e-6 * plain.abs().max(1.0), "{head:?}: loss {plain} vs {value}");
        assert_eq!(plain_grads.len(), grads.len());
        for (i, (a, b)) in plain_grads.iter().zip(&grads).enumerate() {
            let d = max_diff(a, b);
            assert!(d <= 1e-6, "{head:?}: adapter tensor {i}: gradients differ by {d}");
        }
        assert!(grads.iter().any(|g| g.iter().any(|v| *v != 0.0)), "some adapter learns");
        // The prefix's adapters get nothing, the student's all get theirs.
        let per_layer = 14; // 7 linears × (A, B)
        assert!(grads[..2 * per_layer].iter().all(|g| g.is_empty()), "no gradient at or below the hookpoint");
        assert!(grads[2 * per_layer..].iter().all(|g| !g.is_empty()), "every student adapter has a gradient");
    }

    // Training: the same adapter with and without recomputation (up to the order of float
    // additions in the backward, which Adam's normalised steps carry into the weights).
    let tmp = tempfile::tempdir().expect("tmp");
    let data = chunks(4, 16);
    let mut adapters = Vec::new();
    for (name, recompute) in [("plain", false), ("recompute", true)] {
        let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach).with_recompute(recompute);
        let cfg =
            TuneConfig { lr: 1e-2, epochs: 2, save_every: 1000, out: tmp.path().join(name), ..TuneConfig::default() };
        train_adapters(model(&lora), &lora, &objective, &data, &cfg, &mut |_| true).expect("train");
        assert!(objective.uses_shared_prefix());
        adapters.push(adapter_values(&tmp.path().join(name).join("adapter")));
    }
    let d = max_diff(&adapters[0], &adapters[1]);
    let scale = adapters[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(d <= 1e-5 * scale.max(1.0), "the trained adapters differ by {d} (largest value {scale})");
}

#[test]
fn recomputation_needs_the_student_to_start_at_the_hookpoint() {
    let sae = sae();
    let m = model(&lora());
    for objective in [
        SaeTuning::new(&sae, at(1), SaeGrad::StraightThrough).with_recompute(true),
        SaeTuning::new(&sae, at(1), SaeGrad::Detach).with_shared_prefix(false).with_recompute(true),
    ] {
        match objective.check(&m) {
            Err(Error::Options { option, message }) => {
                assert_eq!(option, "recompute");
                assert!(message.contains("layers.1"), "{message}");
            }
            other => panic!("expected the recompute option refused, got {other:?}"),
        }
    }
    // Allowed (and then used) with the detach splice.
    let ok = SaeTuning::new(&sae, at(1), SaeGrad::Detach).with_recompute(true);
    ok.check(&m).expect("detach splice at a residual hookpoint");
    assert!(ok.uses_shared_prefix() && ok.recomputes());
}
