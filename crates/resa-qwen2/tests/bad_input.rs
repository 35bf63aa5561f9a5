//! Every bad input named in the loading contract gives a typed error naming the problem.

mod common;

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::DType;
use common::fixture;
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};
use resa_qwen2::{Error, Qwen2ForCausalLM};

fn copy_case(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture(case)).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

fn load(dir: &Path) -> Result<Qwen2ForCausalLM<Flex>, Error> {
    Qwen2ForCausalLM::<Flex>::from_pretrained(dir, &Default::default(), DType::F32)
}

/// Rewrites `model.safetensors` through `edit`.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<OwnedTensor>)) {
    let path = dir.join("model.safetensors");
    let r = SafetensorsReader::open_file(&path).expect("open");
    let mut tensors: Vec<OwnedTensor> = r
        .keys()
        .map(|k| {
            let (v, s) = r.read_f32_any(k).expect("read");
            OwnedTensor::from_f32(k, &v, s, StoredDtype::F32)
        })
        .collect();
    edit(&mut tensors);
    write_safetensors(&path, &tensors, None).expect("write");
}

#[test]
fn missing_tensor() {
    let dir = copy_case("tied_gqa_f32_old");
    edit_weights(dir.path(), |t| t.retain(|t| t.name != "model.layers.1.mlp.up_proj.weight"));
    match load(dir.path()) {
        Err(Error::MissingTensor { key, .. }) => assert_eq!(key, "model.layers.1.mlp.up_proj.weight"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn unexpected_tensor() {
    let dir = copy_case("tied_gqa_f32_old");
    edit_weights(dir.path(), |t| {
        t.push(OwnedTensor::from_f32("model.layers.7.mlp.up_proj.weight", &[0.0; 4], vec![2, 2], StoredDtype::F32))
    });
    match load(dir.path()) {
        Err(Error::UnexpectedTensor { key, .. }) => assert_eq!(key, "model.layers.7.mlp.up_proj.weight"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn misshaped_tensor() {
    let dir = copy_case("tied_gqa_f32_old");
    edit_weights(dir.path(), |t| {
        let q = t.iter_mut().find(|t| t.name == "model.layers.0.self_attn.q_proj.bias").expect("bias");
        *q = OwnedTensor::from_f32(q.name.clone(), &[0.0; 63], vec![63], StoredDtype::F32);
    });
    match load(dir.path()) {
        Err(Error::ShapeMismatch { key, expected, found }) => {
            assert_eq!(key, "model.layers.0.self_attn.q_proj.bias");
            assert_eq!((expected, found), (vec![64], vec![63]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn a_nan_or_an_infinity_in_a_weight_is_refused_with_its_name() {
    for (bad, name) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let dir = copy_case("tied_gqa_f32_old");
        edit_weights(dir.path(), |t| {
            let w = t.iter_mut().find(|t| t.name == "model.layers.1.mlp.down_proj.weight").expect("weight");
            let mut values: Vec<f32> =
                w.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            values[5] = bad;
            *w = OwnedTensor::from_f32(w.name.clone(), &values, w.shape.clone(), StoredDtype::F32);
        });
        match load(dir.path()) {
            Err(Error::NonFinite { key, index, .. }) => {
                assert_eq!((key.as_str(), index), ("model.layers.1.mlp.down_proj.weight", 5), "{name}");
            }
            other => panic!("{name}: expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn unsupported_dtype() {
    let dir = copy_case("tied_gqa_f32_old");
    edit_weights(dir.path(), |t| {
        let n = t.iter_mut().find(|t| t.name == "model.norm.weight").expect("norm");
        let values: Vec<i64> = vec![1; 64];
        *n = OwnedTensor::from_i64(n.name.clone(), &values, vec![64]);
    });
    assert!(matches!(load(dir.path()), Err(Error::UnsupportedDtype { .. })));
}

#[test]
fn bad_config_values() {
    for (from, to, field) in [
        ("\"silu\"", "\"relu\"", "hidden_act"),
        ("\"use_sliding_window\": false", "\"use_sliding_window\": true", "use_sliding_window"),
        ("\"num_attention_heads\": 4", "\"num_attention_heads\": 3", "num_attention_heads"),
    ] {
        let dir = copy_case("tied_gqa_f32_old");
        let path = dir.path().join("config.json");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "fixture lacks {from}");
        std::fs::write(&path, text.replace(from, to)).expect("write");
        match load(dir.path()) {
            Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected Config error for {field}, got {other:?}"),
        }
    }
}

#[test]
fn malformed_or_missing_files() {
    let dir = copy_case("tied_gqa_f32_old");
    std::fs::write(dir.path().join("config.json"), "{ not json").expect("write");
    assert!(matches!(load(dir.path()), Err(Error::Json { .. })));

    let dir = copy_case("tied_gqa_f32_old");
    std::fs::remove_file(dir.path().join("config.json")).expect("rm");
    assert!(matches!(load(dir.path()), Err(Error::Io { .. })));

    let dir = copy_case("tied_gqa_f32_old");
    std::fs::remove_file(dir.path().join("model.safetensors")).expect("rm");
    assert!(matches!(load(dir.path()), Err(Error::Io { .. })));

    let dir = copy_case("untied_mqa_bf16_sharded_new");
    std::fs::remove_file(dir.path().join("model-00002-of-00006.safetensors")).expect("rm");
    match load(dir.path()) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("model-00002-of-00006.safetensors")),
        other => panic!("expected Io for the missing shard, got {other:?}"),
    }
}

#[test]
fn bad_forward_inputs() {
    use burn::tensor::{Int, Tensor};
    use resa_qwen2::{ForwardInput, Hookpoint, Hooks};
    let model = load(&fixture("tied_gqa_f32_old")).expect("load");
    let ids = Tensor::<Flex, 2, Int>::from_ints([[3, 4, 5]], &Default::default());
    // A layer the model does not have cannot become a hookpoint of it.
    match Hookpoint::Residual(3).within(model.config().num_hidden_layers) {
        Err(Error::Hookpoint { name, .. }) => assert_eq!(name, "layers.3"),
        other => panic!("expected Hookpoint error, got {other:?}"),
    }
    // One checked against a deeper model is refused by the forward pass.
    let hooks = Hooks::capture([Hookpoint::Residual(3).within(4).expect("in range")]);
    match model.forward(ForwardInput::new(ids), &hooks, None) {
        Err(Error::Hookpoint { name, .. }) => assert_eq!(name, "layers.3"),
        other => panic!("expected Hookpoint error, got {:?}", other.map(|_| ())),
    }
}

/// A safetensors header whose shape product overflows u64 is a typed error, not a panic.
#[test]
fn overflowing_shape_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.safetensors");
    let header = br#"{"x":{"dtype":"F32","shape":[36028797018963968,128],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 4]);
    std::fs::write(&path, bytes).expect("write");
    let err = SafetensorsReader::open_file(&path).expect_err("refused");
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("do not match shape"), "{err}");
}

/// NaN or infinity in a tensor is refused by `read_f32_finite`, naming the tensor and element.
#[test]
fn non_finite_values_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.safetensors");
    write_safetensors(&path, &[OwnedTensor::from_f32("w", &[1.0, f32::NAN, 2.0], vec![3], StoredDtype::F32)], None)
        .expect("write");
    let r = SafetensorsReader::open_file(&path).expect("open");
    assert_eq!(r.read_f32("w", &[3]).expect("plain read").len(), 3);
    let err = r.read_f32_finite("w", &[3]).expect_err("NaN");
    assert!(matches!(err, Error::NonFinite { index: 1, .. }), "{err}");
    assert!(err.to_string().contains("`w`") && err.to_string().contains("x.safetensors"), "{err}");
}

/// Generation refuses `max_new_tokens = 0` and prompts with no room left in the positions.
#[test]
fn generation_limits_are_checked() {
    let cfg = resa_qwen2::Qwen2Config { max_position_embeddings: 16, ..resa_qwen2::Qwen2Config::tiny() };
    let model = Qwen2ForCausalLM::<Flex>::random(&cfg, 0, &Default::default(), DType::F32);
    let err = resa_qwen2::generate(&model, &[vec![1, 2, 3]], &resa_qwen2::GenerationConfig::greedy(0, vec![]))
        .expect_err("0 tokens");
    assert!(err.to_string().contains("max_new_tokens"), "{err}");
    let long: Vec<u32> = (0..16).map(|i| i % 50).collect();
    let err =
        resa_qwen2::generate(&model, &[long], &resa_qwen2::GenerationConfig::greedy(4, vec![])).expect_err("too long");
    assert!(err.to_string().contains("16 tokens") && err.to_string().contains("16 positions"), "{err}");
    resa_qwen2::generate(&model, &[vec![1, 2, 3]], &resa_qwen2::GenerationConfig::greedy(2, vec![])).expect("fits");
}

/// A prompt prefilled in pieces (through the KV cache) continues as the one-forward prefill
/// does, padded batches included: long prompts never need all their attention scores at once.
#[test]
fn chunked_prefill_continues_as_the_one_forward_prefill() {
    let model = load(&fixture("tied_gqa_f32_old")).expect("model");
    let prompts = vec![(3..16).collect::<Vec<u32>>(), (20..29).collect::<Vec<u32>>()];
    let cfg = resa_qwen2::GenerationConfig::greedy(6, vec![]);
    let whole = resa_qwen2::generate_with_prefill_chunk(&model, &prompts, &cfg, usize::MAX).expect("whole");
    for chunk in [1, 4, 5, 13] {
        let pieces = resa_qwen2::generate_with_prefill_chunk(&model, &prompts, &cfg, chunk).expect("pieces");
        assert_eq!(pieces, whole, "prefill chunk {chunk}");
    }
    assert!(resa_qwen2::generate_with_prefill_chunk(&model, &prompts, &cfg, 0).is_err());
}
