//! The Stage II step against transformers + PEFT + sparsify with Resa's splice
//! (`scripts/reference/stage2_reference.py`): KL ≤ 1e-4 relative, LoRA gradients ≤ 1e-3
//! relative, for `detach` and `straight-through`.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::{DType, Int, Tensor, TensorData};
use resa_qwen2::safetensors_io::SafetensorsReader;
use resa_qwen2::{AdapterMode, Hookpoint, Qwen2ForCausalLM};
use resa_sae::SparseCoder;
use resa_tune::{Head, SaeGrad, lora_gradients, stage2_loss};

use common::at;

type B = burn::backend::Flex;
type AD = Autodiff<B>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn setup() -> (Qwen2ForCausalLM<AD>, SparseCoder<AD>) {
    let device = Default::default();
    let mut model = Qwen2ForCausalLM::<AD>::from_pretrained(
        root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old"),
        &device,
        DType::F32,
    )
    .expect("model");
    resa_lora::load_adapter(&mut model, root().join("resa-lora/tests/fixtures/all7_tied_gqa/adapter"))
        .expect("adapter");
    let model = resa_lora::trainable(model);
    let sae =
        SparseCoder::<AD>::load(root().join("resa-sae/tests/fixtures/signum/final/layers.1"), &device).expect("sae");
    (model, sae)
}

fn check(mode: SaeGrad, file: &str) {
    let (model, sae) = setup();
    let reference =
        SafetensorsReader::open_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file))
            .expect("ref");
    let (ids, shape) = reference.read_i64_any("input_ids").expect("ids");
    let input = Tensor::<AD, 2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &Default::default());
    let kl = stage2_loss(&model, &sae, at(1), mode, input, AdapterMode::On, Head::Full).expect("loss");
    let ours = kl.clone().into_data().iter::<f32>().next().expect("kl");
    let want = reference.read_f32_any("kl").expect("kl").0[0];
    assert!((ours - want).abs() <= 1e-4 * want.abs(), "{file}: kl {ours} vs {want}");
    let grads = kl.backward();
    let ours = lora_gradients(&model, &grads);
    let want_keys: Vec<String> = reference
        .keys()
        .filter(|k| k.starts_with("grad."))
        .map(|k| k.trim_start_matches("grad.").to_string())
        .collect();
    let mut our_keys: Vec<String> = ours.iter().map(|(k, _)| k.clone()).collect();
    let mut sorted_want = want_keys.clone();
    our_keys.sort();
    sorted_want.sort();
    assert_eq!(our_keys, sorted_want, "{file}: which matrices get a gradient");
    for (key, g) in ours {
        let (want, shape) = reference.read_f32_any(&format!("grad.{key}")).expect("grad");
        assert_eq!(g.dims().to_vec(), shape, "{key}: shape");
        let got: Vec<f32> = g.into_data().iter::<f32>().collect();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-3 * scale, "{file} {key}: max diff {diff} vs scale {scale}");
    }
}

#[test]
fn detach_matches_resa_reference() {
    check(SaeGrad::Detach, "stage2_detach.safetensors");
}

#[test]
fn straight_through_matches_reference() {
    check(SaeGrad::StraightThrough, "stage2_straight-through.safetensors");
}

#[test]
fn an_sae_of_another_width_is_rejected() {
    let (model, _) = setup();
    let device = Default::default();
    let sae = SparseCoder::<AD>::random(resa_sae::SaeConfig::new(32, 64, 4), 0, &device).expect("sae");
    let input = Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![5i64, 6, 7], [1, 3]), &device);
    let err = stage2_loss(&model, &sae, at(1), SaeGrad::Detach, input, AdapterMode::On, Head::Full).expect_err("width");
    assert!(err.to_string().contains("reads width 32, the activations have width 64"), "{err}");
    // A layer the model lacks is refused where the hookpoint meets the model.
    let err = Hookpoint::Residual(3).within(model.config().num_hidden_layers).expect_err("layer");
    assert!(err.to_string().contains("layers.3"), "{err}");
}
