//! The output head applied in pieces ([`Head::Chunked`]) gives the loss and the adapter
//! gradients of the whole-logits computation, in the plain and the shared-prefix Stage II
//! losses, for pieces that do and do not divide the positions; and the trained adapter is
//! the same. One test in its own process: dropout draws from the backend's global generator.

mod common;

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use common::*;
use resa_qwen2::AdapterMode;
use resa_tune::{Head, SaeGrad, SaeTuning, TuneConfig, stage2_loss, stage2_loss_shared_prefix, train_adapters};

#[test]
fn a_chunked_head_gives_the_whole_heads_loss_gradients_and_adapter() {
    let device = Default::default();
    let sae = sae();
    let lora = lora();
    let mut m = model(&lora);
    <AD as Backend>::seed(&device, 3);
    for (_, lin) in m.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut() {
            let shape = ad.b.val().dims();
            ad.b = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), &device));
        }
    }
    let m = resa_lora::trainable(m);
    let ids: Vec<i64> = chunks(2, 12).into_iter().flatten().map(i64::from).collect();
    let ids = Tensor::<AD, 2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let run = |head: Head, shared: bool| {
        <AD as Backend>::seed(&device, 7);
        let loss = if shared {
            stage2_loss_shared_prefix(&m, &sae, at(1), ids.clone(), AdapterMode::Train(7), head)
        } else {
            stage2_loss(&m, &sae, at(1), SaeGrad::StraightThrough, ids.clone(), AdapterMode::Train(7), head)
        }
        .expect("loss");
        let value = loss.clone().into_scalar();
        let grads = loss.backward();
        (value, adapter_grads(&m, &grads))
    };
    for shared in [false, true] {
        let (full, full_grads) = run(Head::Full, shared);
        assert!(full_grads.iter().any(|g| g.iter().any(|v| *v != 0.0)), "some adapter learns");
        for chunk in [1, 5, 24, 100] {
            let (value, grads) = run(Head::Chunked(chunk), shared);
            assert!((full - value).abs() <= 1e-5 * full.abs().max(1.0), "chunk {chunk}: loss {full} vs {value}");
            for (i, (a, b)) in full_grads.iter().zip(&grads).enumerate() {
                assert_eq!(a.len(), b.len(), "tensor {i}: one has a gradient, the other not");
                let scale = a.iter().map(|x| x.abs()).fold(1e-6f32, f32::max);
                let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(d <= 1e-4 * scale, "chunk {chunk} shared {shared}: tensor {i} differs by {d} (scale {scale})");
            }
        }
    }

    // Training: the adapters agree to rounding.
    let tmp = tempfile::tempdir().expect("tmp");
    let data = chunks(4, 16);
    let mut adapters = Vec::new();
    for (name, head) in [("full", Head::Full), ("chunked", Head::Chunked(7))] {
        let objective = SaeTuning::new(&sae, at(1), SaeGrad::Detach).with_head(head);
        let cfg =
            TuneConfig { lr: 1e-2, epochs: 2, save_every: 1000, out: tmp.path().join(name), ..TuneConfig::default() };
        train_adapters(model(&lora), &lora, &objective, &data, &cfg, &mut |_| true).expect("train");
        adapters.push(adapter_values(&tmp.path().join(name).join("adapter")));
    }
    let (a, b) = (&adapters[0], &adapters[1]);
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(d <= 1e-4, "the trained adapters differ by {d}");
    assert!(a.iter().any(|v| *v != 0.0));
}
