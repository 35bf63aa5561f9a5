//! resa-lora against PEFT: fixtures written by `scripts/reference/lora_reference.py`.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Int, Tensor, TensorData};
use resa_lora::{
    LoraConfig, attach, load_adapter, merge, merge_and_unload, remove, save_adapter, save_merged, unmerge,
};
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};
use resa_qwen2::{AdapterMode, ForwardInput, Hooks, Qwen2ForCausalLM};

type B = burn::backend::Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn qwen_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../resa-qwen2/tests/fixtures").join(name)
}

fn model(dir: &Path) -> Qwen2ForCausalLM<B> {
    Qwen2ForCausalLM::from_pretrained(dir, &Default::default(), DType::F32).expect("model")
}

fn ids(expected: &SafetensorsReader) -> (Vec<i64>, Vec<usize>) {
    expected.read_i64_any("input_ids").expect("ids")
}

fn logits(m: &Qwen2ForCausalLM<B>, (ids, shape): &(Vec<i64>, Vec<usize>), mode: AdapterMode) -> Vec<f32> {
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [shape[0], shape[1]]), &Default::default());
    let out = m.forward(ForwardInput::new(input).with_adapters(mode), &Hooks::default(), None).expect("forward");
    out.logits.expect("logits").into_data().iter::<f32>().collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn expected(case: &str) -> SafetensorsReader {
    SafetensorsReader::open_file(fixtures().join(case).join("expected.safetensors")).expect("expected")
}

fn check_case(case: &str, base: &Path) {
    let exp = expected(case);
    let input = ids(&exp);
    let mut m = model(base);
    let plain = logits(&m, &input, AdapterMode::On);
    load_adapter(&mut m, fixtures().join(case).join("adapter")).expect("load adapter");
    let want = exp.read_f32_any("logits").expect("logits").0;
    let got = logits(&m, &input, AdapterMode::On);
    assert!(max_diff(&got, &want) <= 1e-4, "{case}: adapter logits differ by {}", max_diff(&got, &want));
    assert!(max_diff(&got, &plain) > 1e-2, "{case}: the adapter must change the logits");
    // Off gives the base model back.
    assert!(max_diff(&logits(&m, &input, AdapterMode::Off), &plain) <= 1e-6);
    // Merge: same logits, adapter folded in; unmerge restores the weights.
    assert!(merge(&mut m) > 0);
    let merged = logits(&m, &input, AdapterMode::On);
    let want_merged = exp.read_f32_any("logits_merged").expect("merged").0;
    assert!(
        max_diff(&merged, &want_merged) <= 1e-4,
        "{case}: merged logits differ by {}",
        max_diff(&merged, &want_merged)
    );
    assert!(unmerge(&mut m) > 0);
    assert!(max_diff(&logits(&m, &input, AdapterMode::Off), &plain) <= 1e-5, "{case}: unmerge restores the base");
    assert!(max_diff(&logits(&m, &input, AdapterMode::On), &want) <= 1e-4);
}

#[test]
fn all_seven_targets_match_peft() {
    check_case("all7_tied_gqa", &qwen_fixture("tied_gqa_f32_old"));
}

#[test]
fn layer_subset_with_rslora_matches_peft() {
    check_case("subset_rslora_mha", &qwen_fixture("untied_mha_f16_old"));
}

#[test]
fn regex_targets_match_peft() {
    check_case("regex_other", &fixtures().join("other_model"));
}

#[test]
fn an_adapter_attaches_to_another_model_of_the_same_shapes() {
    let exp = expected("all7_tied_gqa");
    let mut m = model(&fixtures().join("other_model"));
    load_adapter(&mut m, fixtures().join("all7_tied_gqa/adapter")).expect("load");
    let got = logits(&m, &ids(&exp), AdapterMode::On);
    let want = exp.read_f32_any("logits_on_other").expect("other").0;
    assert!(max_diff(&got, &want) <= 1e-4, "{}", max_diff(&got, &want));
}

#[test]
fn saved_adapter_reloads_identically_and_has_peft_keys() {
    let exp = expected("all7_tied_gqa");
    let input = ids(&exp);
    let mut m = model(&qwen_fixture("tied_gqa_f32_old"));
    let cfg = load_adapter(&mut m, fixtures().join("all7_tied_gqa/adapter")).expect("load");
    let want = logits(&m, &input, AdapterMode::On);
    let tmp = tempfile::tempdir().expect("tmp");
    save_adapter(&m, &cfg, tmp.path().join("a")).expect("save");
    let r = SafetensorsReader::open_file(tmp.path().join("a/adapter_model.safetensors")).expect("saved");
    assert_eq!(r.shape("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), Some(&[4usize, 64][..]));
    assert_eq!(r.shape("base_model.model.model.layers.2.mlp.down_proj.lora_B.weight"), Some(&[64usize, 4][..]));
    let mut again = model(&qwen_fixture("tied_gqa_f32_old"));
    load_adapter(&mut again, tmp.path().join("a")).expect("reload");
    assert_eq!(logits(&again, &input, AdapterMode::On), want);
    remove(&mut again);
    assert!(again.linears().iter().all(|(_, l)| l.adapter.is_none()));
}

/// Writes an adapter and a merged checkpoint made here, with our logits, for
/// `scripts/reference/lora_reference.py --check-adapter / --check-merged`; also checks that
/// the merged folder reloads here with the same logits.
#[test]
fn writes_folders_for_the_peft_and_transformers_interop_checks() {
    let base = qwen_fixture("tied_gqa_f32_old");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop");
    let exp = expected("all7_tied_gqa");
    let input = ids(&exp);
    let mut m = model(&base);
    let cfg = LoraConfig::new(4, 16.0, 0.0, &["q_proj", "o_proj", "up_proj"]);
    attach(&mut m, &cfg, 7).expect("attach");
    // Give B non-zero values so the adapter matters.
    for (_, lin) in m.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut() {
            let [r, out] = ad.b.dims();
            let v: Vec<f32> = (0..r * out).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.02).collect();
            ad.b =
                burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, out]), &Default::default()));
        }
    }
    let ours = logits(&m, &input, AdapterMode::On);
    let check = |dir: &Path| {
        let t = vec![
            OwnedTensor::from_i64("input_ids", &input.0, input.1.clone()),
            OwnedTensor::from_f32("logits", &ours, vec![2, 7, 96], StoredDtype::F32),
        ];
        write_safetensors(dir.join("check.safetensors"), &t, None).expect("check file");
    };
    save_adapter(&m, &cfg, root.join("lora-adapter")).expect("save adapter");
    check(&root.join("lora-adapter"));
    save_merged(m, root.join("lora-merged"), StoredDtype::F32, None).expect("save merged");
    check(&root.join("lora-merged"));
    let merged = model(&root.join("lora-merged"));
    assert!(max_diff(&logits(&merged, &input, AdapterMode::On), &ours) <= 1e-4);
}

#[test]
fn merge_and_unload_gives_a_plain_model() {
    let mut m = model(&qwen_fixture("tied_gqa_f32_old"));
    load_adapter(&mut m, fixtures().join("all7_tied_gqa/adapter")).expect("load");
    let m = merge_and_unload(m);
    assert!(m.linears().iter().all(|(_, l)| l.adapter.is_none()));
    let exp = expected("all7_tied_gqa");
    let got = logits(&m, &ids(&exp), AdapterMode::On);
    assert!(max_diff(&got, &exp.read_f32_any("logits_merged").expect("m").0) <= 1e-4);
}

/// An adapter holding NaN is refused at load, naming the tensor.
#[test]
fn non_finite_adapter_weights_are_refused() {
    use resa_qwen2::safetensors_io::{OwnedTensor, StoredDtype, write_safetensors};
    let tmp = tempfile::tempdir().expect("tmp");
    let src = fixtures().join("all7_tied_gqa/adapter");
    let dst = tmp.path().join("bad");
    std::fs::create_dir(&dst).expect("dir");
    std::fs::copy(src.join("adapter_config.json"), dst.join("adapter_config.json")).expect("copy");
    let r = SafetensorsReader::open_file(src.join("adapter_model.safetensors")).expect("open");
    let key = "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight";
    let tensors: Vec<OwnedTensor> = r
        .keys()
        .map(|k| {
            let (mut v, s) = r.read_f32_any(k).expect("read");
            if k == key {
                v[0] = f32::NAN;
            }
            OwnedTensor::from_f32(k, &v, s, StoredDtype::F32)
        })
        .collect();
    write_safetensors(dst.join("adapter_model.safetensors"), &tensors, None).expect("write");
    let mut m = model(&qwen_fixture("tied_gqa_f32_old"));
    let err = load_adapter(&mut m, &dst).expect_err("refused");
    assert!(err.to_string().contains(key) && err.to_string().contains("non-finite"), "{err}");
}
