//! LoRA invariants (zero B, frozen base, dropout only in training) and bad inputs.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::{DType, Int, Tensor, TensorData};
use resa_lora::{Error, LoraConfig, attach, load_adapter, trainable};
use resa_qwen2::{AdapterMode, ForwardInput, Hooks, Qwen2ForCausalLM};

type B = burn::backend::Flex;
type AD = Autodiff<B>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn qwen_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../resa-qwen2/tests/fixtures").join(name)
}

fn model<Bk: burn::tensor::backend::Backend>(name: &str) -> Qwen2ForCausalLM<Bk> {
    Qwen2ForCausalLM::from_pretrained(qwen_fixture(name), &Default::default(), DType::F32).expect("model")
}

fn input<Bk: burn::tensor::backend::Backend>() -> ForwardInput<Bk> {
    let ids: Vec<i64> = (0..14).map(|i| (i * 13 + 5) % 96).collect();
    ForwardInput::new(Tensor::<Bk, 2, Int>::from_data(TensorData::new(ids, [2, 7]), &Default::default()))
}

fn logits<Bk: burn::tensor::backend::Backend>(m: &Qwen2ForCausalLM<Bk>, mode: AdapterMode) -> Vec<f32> {
    let out = m.forward(input().with_adapters(mode), &Hooks::default(), None).expect("forward");
    out.logits.expect("logits").into_data().iter::<f32>().collect()
}

#[test]
fn fresh_adapters_with_zero_b_leave_logits_unchanged() {
    let mut m = model::<B>("tied_gqa_f32_old");
    let before = logits(&m, AdapterMode::On);
    let names = attach(&mut m, &LoraConfig::reference(), 0).expect("attach");
    assert_eq!(names.len(), 3 * 7);
    assert_eq!(logits(&m, AdapterMode::On), before);
    let (_, lin) = &m.linears()[0];
    let ad = lin.adapter.as_ref().expect("adapter");
    assert_eq!(ad.scale, 4.0, "alpha 128 / r 32");
    let a: Vec<f32> = ad.a.val().into_data().iter::<f32>().collect();
    let bound = 1.0 / 64f32.sqrt();
    assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| v.abs() > bound / 2.0), "Kaiming-uniform A");
}

#[test]
fn only_adapters_get_gradients() {
    let mut m = model::<AD>("tied_gqa_f32_old");
    attach(&mut m, &LoraConfig::new(4, 8.0, 0.0, &["q_proj", "down_proj"]), 1).expect("attach");
    // Make B non-zero so gradients reach A as well.
    for (_, lin) in m.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut() {
            ad.b = ad.b.clone().map(|b| b.ones_like().mul_scalar(0.01));
        }
    }
    let m = trainable(m);
    let out = m.forward(input().with_adapters(AdapterMode::Train(1)), &Hooks::default(), None).expect("forward");
    let grads = out.logits.expect("logits").powi_scalar(2).mean().backward();
    assert!(m.model.embed_tokens.weight.val().grad(&grads).is_none(), "embeddings are frozen");
    for (name, lin) in m.linears() {
        assert!(lin.weight.val().grad(&grads).is_none(), "{name}: base weight is frozen");
        if let Some(ad) = &lin.adapter {
            assert!(ad.a.val().grad(&grads).is_some() && ad.b.val().grad(&grads).is_some(), "{name}: adapter trains");
        }
    }
    assert!(m.model.layers[0].input_layernorm.weight.val().grad(&grads).is_none());
}

#[test]
fn dropout_acts_only_in_training_mode() {
    let mut m = model::<B>("tied_gqa_f32_old");
    let cfg = load_adapter(&mut m, fixtures().join("all7_tied_gqa/adapter")).expect("load");
    assert_eq!(cfg.lora_dropout, 0.05);
    let eval = logits(&m, AdapterMode::On);
    assert_eq!(logits(&m, AdapterMode::On), eval, "no dropout outside training");
    let train = logits(&m, AdapterMode::Train(1));
    let d = eval.iter().zip(&train).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(d > 1e-4, "dropout changes the training forward ({d})");
    // The masks are the key's: the same key gives the same forward, whatever was drawn from
    // the backend's generator in between; another key gives other masks.
    let _ = burn::tensor::Tensor::<B, 1>::random([1000], burn::tensor::Distribution::Default, &Default::default());
    assert_eq!(logits(&m, AdapterMode::Train(1)), train, "same key, same masks");
    assert_ne!(logits(&m, AdapterMode::Train(2)), train, "another key, other masks");
}

fn err_text<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    r.expect_err("must fail").to_string()
}

#[test]
fn adapter_for_other_shapes_names_the_key_and_shapes() {
    let mut m = model::<B>("untied_mha_f16_old");
    // untied_mha has 2 kv heads of 32 (k_proj out 64); the adapter was made for 2 kv heads of 16.
    let msg = err_text(load_adapter(&mut m, fixtures().join("all7_tied_gqa/adapter")));
    assert!(msg.contains("k_proj.lora_B.weight") && msg.contains("[32, 4]") && msg.contains("[64, 4]"), "{msg}");
}

fn adapter_folder(config: &str, tensors: &[(&str, Vec<usize>)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("adapter_config.json"), config).expect("cfg");
    let t: Vec<_> = tensors
        .iter()
        .map(|(k, s)| {
            let n = s.iter().product();
            resa_qwen2::safetensors_io::OwnedTensor::from_f32(
                *k,
                &vec![0.0; n],
                s.clone(),
                resa_qwen2::safetensors_io::StoredDtype::F32,
            )
        })
        .collect();
    resa_qwen2::safetensors_io::write_safetensors(tmp.path().join("adapter_model.safetensors"), &t, None).expect("w");
    tmp
}

#[test]
fn adapter_for_another_architecture_is_rejected() {
    let mut m = model::<B>("tied_gqa_f32_old");
    let gpt2 = adapter_folder(
        r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}"#,
        &[("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", vec![4, 64])],
    );
    let msg = err_text(load_adapter(&mut m, gpt2.path()));
    assert!(msg.contains("`c_attn`") && msg.contains("matches no linear layer"), "{msg}");
    let stray = adapter_folder(
        r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "layers_to_transform": 0}"#,
        &[
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", vec![4, 64]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", vec![64, 4]),
            ("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", vec![4, 64]),
        ],
    );
    let msg = err_text(load_adapter(&mut m, stray.path()));
    assert!(msg.contains("unexpected tensor `base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`"), "{msg}");
    let missing = adapter_folder(
        r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "layers_to_transform": [0]}"#,
        &[("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", vec![4, 64])],
    );
    let msg = err_text(load_adapter(&mut m, missing.path()));
    assert!(msg.contains("`base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight` is missing"), "{msg}");
}

#[test]
fn bad_configs_are_rejected_with_the_field_named() {
    let mut m = model::<B>("tied_gqa_f32_old");
    let msg = err_text(attach(&mut m, &LoraConfig::new(4, 8.0, 0.0, &["qkv_proj"]), 0));
    assert!(msg.contains("`qkv_proj`"), "{msg}");
    let msg = err_text(attach(&mut m, &LoraConfig::new(0, 8.0, 0.0, &["q_proj"]), 0));
    assert!(msg.contains("field `r`") && msg.contains("at least 1"), "{msg}");
    for (cfg, field) in [
        (r#"{"peft_type": "LORA", "r": 0, "lora_alpha": 8, "target_modules": ["q_proj"]}"#, "`r`"),
        (
            r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "use_dora": true}"#,
            "`use_dora`",
        ),
        (r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "bias": "all"}"#, "`bias`"),
        (r#"{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}"#, "`lora_alpha`"),
        (r#"{"peft_type": "IA3", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}"#, "`peft_type`"),
        (r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "(("}"#, "`target_modules`"),
    ] {
        let dir = adapter_folder(cfg, &[]);
        let msg = err_text(load_adapter(&mut m, dir.path()));
        assert!(msg.contains(field) && msg.contains("adapter_config.json"), "{cfg}: {msg}");
    }
    let empty = tempfile::tempdir().expect("tmp");
    let msg = err_text(load_adapter(&mut m, empty.path()));
    assert!(msg.contains("adapter_config.json") && msg.contains("not found"), "{msg}");
}

#[test]
fn attaching_twice_is_refused() {
    let mut m = model::<B>("tied_gqa_f32_old");
    attach(&mut m, &LoraConfig::reference(), 0).expect("first");
    assert!(matches!(attach(&mut m, &LoraConfig::reference(), 0), Err(Error::State(_))));
}

#[test]
fn an_absurd_rank_is_refused_with_its_size_before_any_allocation() {
    let mut m = model::<burn::backend::Flex>("tied_gqa_f32_old");
    let err = err_text(attach(&mut m, &LoraConfig::new(100_000_000, 16.0, 0.0, &resa_lora::ALL_LINEAR), 0));
    assert!(err.contains("rank 100000000 exceeds both sides") && err.contains("GiB"), "{err}");
    assert_eq!(resa_lora::remove(&mut m), 0, "nothing was attached");
}
