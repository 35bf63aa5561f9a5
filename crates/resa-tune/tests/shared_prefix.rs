//! The shared-prefix Stage II loss (the student starts from the teacher's activation at the
//! hookpoint) equals the plain one: the same loss and adapter gradients with dropout on, and
//! the same trained adapter. One test in its own process: dropout draws from the backend's
//! global generator, which parallel tests would share.

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use resa_qwen2::AdapterMode;
use resa_tune::{
    Head, SaeGrad, SaeTuning, TuneConfig, prefix_adapters_are_zero, stage2_loss, stage2_loss_shared_prefix,
    train_adapters,
};

#[test]
fn the_shared_prefix_gives_the_plain_loss_gradients_and_adapter() {
    let device = Default::default();
    let sae = sae();
    let lora = lora(); // dropout 0.05: the masks of the layers run must be the plain ones
    // Adapters above the hookpoint have moved (B ≠ 0); those at and below have not.
    let m = model_moved_above(&lora, 1);
    assert!(prefix_adapters_are_zero(&m, 1) && !prefix_adapters_are_zero(&m, 2));

    let ids: Vec<i64> = chunks(2, 12).into_iter().flatten().map(i64::from).collect();
    let ids = Tensor::<AD, 2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let run = |shared: bool| {
        <AD as Backend>::seed(&device, 7);
        let loss = if shared {
            stage2_loss_shared_prefix(&m, &sae, at(1), ids.clone(), AdapterMode::Train(7), Head::Full)
        } else {
            stage2_loss(&m, &sae, at(1), SaeGrad::Detach, ids.clone(), AdapterMode::Train(7), Head::Full)
        }
        .expect("loss");
        let value = loss.clone().into_scalar();
        let grads = loss.backward();
        (value, adapter_grads(&m, &grads))
    };
    // The student starts only at a residual hookpoint: an MLP one is refused, never rounded.
    let mlp = resa_qwen2::Hookpoint::Mlp(1).within(m.config().num_hidden_layers).expect("in range");
    let err = stage2_loss_shared_prefix(&m, &sae, mlp, ids.clone(), AdapterMode::Train(7), Head::Full)
        .err()
        .expect("refused");
    assert!(matches!(err, resa_tune::Error::Options { .. }) && err.to_string().contains("layers.1.mlp"), "{err}");
    let (plain, plain_grads) = run(false);
    let (shared, shared_grads) = run(true);
    assert!((plain - shared).abs() <= 1e-6 * plain.abs().max(1.0), "loss {plain} vs {shared}");
    for (i, (a, b)) in plain_grads.iter().zip(&shared_grads).enumerate() {
        // Adapters at and below the hookpoint get no gradient either way.
        let a = if a.is_empty() { vec![0.0; b.len()] } else { a.clone() };
        let b = if b.is_empty() { vec![0.0; a.len()] } else { b.clone() };
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(d <= 1e-6, "adapter tensor {i}: gradients differ by {d}");
    }
    assert!(plain_grads.iter().any(|g| g.iter().any(|v| *v != 0.0)), "some adapter learns");

    // Training: the same adapter, bit for bit, with and without the shared prefix.
    let tmp = tempfile::tempdir().expect("tmp");
    let data = chunks(4, 16);
    let mut adapters = Vec::new();
    for (name, allow) in [("plain", false), ("shared", true)] {
        let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach).with_shared_prefix(allow);
        let cfg =
            TuneConfig { lr: 1e-2, epochs: 2, save_every: 1000, out: tmp.path().join(name), ..TuneConfig::default() };
        train_adapters(model(&lora), &lora, &objective, &data, &cfg, &mut |_| true).expect("train");
        assert_eq!(objective.uses_shared_prefix(), allow);
        adapters.push(adapter_values(&tmp.path().join(name).join("adapter")));
    }
    assert_eq!(adapters[0], adapters[1], "the trained adapters differ");
}
