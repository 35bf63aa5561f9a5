//! `[source]` / `[target]` model references: an `adapter` is merged into the model on load.

use std::path::PathBuf;

use burn::tensor::DType;
use resa_lora::LoraConfig;
use resa_qwen2::Qwen2ForCausalLM;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lora() -> LoraConfig {
    LoraConfig::new(4, 16.0, 0.05, &resa_lora::ALL_LINEAR)
}

#[test]
fn a_model_ref_with_an_adapter_loads_the_merged_model() {
    use burn::module::Param;
    use burn::tensor::{Distribution, Int, Tensor, TensorData};
    use resa_pipeline::pipeline::ModelRef;
    use resa_qwen2::{AdapterMode, ForwardInput, Hooks};

    type P = burn::backend::Flex;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old");
    let device = Default::default();
    let mut with = Qwen2ForCausalLM::<P>::from_pretrained(&dir, &device, DType::F32).expect("model");
    let cfg = lora();
    resa_lora::attach(&mut with, &cfg, 1).expect("attach");
    // PEFT starts B at zero; give the adapter an effect.
    for (_, lin) in with.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut() {
            let shape = ad.b.val().dims();
            ad.b = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), &device));
        }
    }
    resa_lora::save_adapter(&with, &cfg, tmp.path().join("adapter")).expect("save");
    let plain = ModelRef::new(dir.display().to_string()).load::<P>(&dir, &device, DType::F32).expect("plain");
    let merged = ModelRef { adapter: Some(tmp.path().join("adapter").display().to_string()), ..ModelRef::new("") }
        .load::<P>(&dir, &device, DType::F32)
        .expect("merged");
    assert_eq!(resa_lora::remove(&mut merged.clone()), 0, "the adapter is folded in, not attached");
    let ids = || Tensor::<P, 2, Int>::from_data(TensorData::new(vec![3i64, 17, 42, 5, 9], [1, 5]), &device);
    let logits = |m: &Qwen2ForCausalLM<P>, mode| {
        let out = m.forward(ForwardInput::new(ids()).with_adapters(mode), &Hooks::default(), None).expect("forward");
        out.logits.expect("logits").into_data().iter::<f32>().collect::<Vec<_>>()
    };
    let (want, got, base) =
        (logits(&with, AdapterMode::On), logits(&merged, AdapterMode::Off), logits(&plain, AdapterMode::Off));
    let diff = want.iter().zip(&got).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let moved = want.iter().zip(&base).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4 && moved > 1e-3, "merged vs adapter: {diff}; adapter vs base: {moved}");
}
