//! End-to-end tests of `resa sae encode` and `resa train-sae` against the sparsify
//! fixtures of resa-sae (`scripts/reference/sae_reference.py`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{root, s};

use resa::qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};

fn sae_fixtures() -> PathBuf {
    root().join("crates/resa-sae/tests/fixtures")
}

fn tiny_model() -> PathBuf {
    root().join("crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old")
}

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

fn f32s(r: &SafetensorsReader, key: &str) -> Vec<f32> {
    r.read_f32_any(key).unwrap_or_else(|e| panic!("{key}: {e}")).0
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn sae_encode_matches_sparsify() {
    let case = sae_fixtures().join("encode");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out.safetensors");
    let o = resa(&[
        "sae",
        "encode",
        "--sae",
        s(&case.join("sae")),
        "--input",
        s(&case.join("input.safetensors")),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsReader::open_file(&out).expect("out");
    let want = SafetensorsReader::open_file(case.join("expected.safetensors")).expect("expected");
    let mut keys: Vec<&str> = got.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["auxk_loss", "fvu", "sae_out", "top_acts", "top_indices"]);
    assert_eq!(got.dtype("top_indices"), Some(StoredDtype::I64));
    assert_eq!(got.read_i64_any("top_indices").expect("ids"), want.read_i64_any("top_indices").expect("ids"));
    for key in ["top_acts", "sae_out"] {
        let d = max_diff(&f32s(&got, key), &f32s(&want, key));
        assert!(d <= 1e-5, "{key}: {d}");
    }
    for key in ["fvu", "auxk_loss"] {
        let (a, b) = (f32s(&got, key)[0], f32s(&want, key)[0]);
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{key}: {a} vs {b}");
    }
}

#[test]
fn sae_encode_without_dead_mask_writes_no_auxk_loss() {
    let case = sae_fixtures().join("encode");
    let tmp = tempfile::tempdir().expect("tmp");
    let input = SafetensorsReader::open_file(case.join("input.safetensors")).expect("input");
    let (x, shape) = input.read_f32_any("x").expect("x");
    let only_x = tmp.path().join("x.safetensors");
    write_safetensors(&only_x, &[OwnedTensor::from_f32("x", &x, shape, StoredDtype::BF16)], None).expect("write");
    let out = tmp.path().join("out.safetensors");
    let o = resa(&["sae", "encode", "--sae", s(&case.join("sae")), "--input", s(&only_x), "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = SafetensorsReader::open_file(&out).expect("out");
    assert!(!got.contains("auxk_loss"));
    assert_eq!(got.shape("top_indices"), Some(&[24usize, 8][..]));
}

#[test]
fn sae_encode_rejects_bad_inputs() {
    let case = sae_fixtures().join("encode");
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: [(&str, Vec<OwnedTensor>, &str); 4] = [
        ("wide", vec![OwnedTensor::from_f32("x", &[0.0; 65 * 2], vec![2, 65], StoredDtype::F32)], "width 65"),
        (
            "mask",
            vec![
                OwnedTensor::from_f32("x", &[0.0; 64 * 2], vec![2, 64], StoredDtype::F32),
                OwnedTensor::from_i64("dead_mask", &[0; 7], vec![7]),
            ],
            "`dead_mask` has shape [7], expected [128]",
        ),
        ("nox", vec![OwnedTensor::from_f32("y", &[0.0; 4], vec![2, 2], StoredDtype::F32)], "`x`"),
        (
            "float-mask",
            vec![
                OwnedTensor::from_f32("x", &[0.0; 64 * 2], vec![2, 64], StoredDtype::F32),
                OwnedTensor::from_f32("dead_mask", &[0.0; 128], vec![128], StoredDtype::F32),
            ],
            "`dead_mask` in",
        ),
    ];
    for (name, tensors, want) in cases {
        let input = tmp.path().join(format!("{name}.safetensors"));
        write_safetensors(&input, &tensors, None).expect("write");
        let out = tmp.path().join(format!("{name}-out.safetensors"));
        let o = resa(&["sae", "encode", "--sae", s(&case.join("sae")), "--input", s(&input), "--out", s(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{name}: {err}");
        if name == "float-mask" {
            // The message says what the mask may be, and nothing contrary.
            assert!(err.contains("has dtype F32; expected an integer dtype") && !err.contains("expected F32"), "{err}");
        }
        assert!(!out.exists(), "{name}: no output on failure");
    }
}

#[test]
fn train_sae_on_token_ids_matches_sparsify() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let args = common::train_sae_fixture_args(&out);
    let o = resa(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for hp in ["layers.1", "layers.2.mlp"] {
        let ours = SafetensorsReader::open_file(out.join(hp).join("sae.safetensors")).expect("ours");
        let theirs = SafetensorsReader::open_file(sae_fixtures().join("adam/final").join(hp).join("sae.safetensors"))
            .expect("sparsify");
        for key in ["encoder.weight", "encoder.bias", "W_dec", "b_dec"] {
            let d = max_diff(&f32s(&ours, key), &f32s(&theirs, key));
            assert!(d <= 1e-4, "{hp} {key}: {d}");
        }
    }
    assert!(out.join("metrics.jsonl").is_file() && out.join("checkpoints/step-4/stage1.json").is_file());
    let names: Vec<String> =
        std::fs::read_dir(&out).expect("out").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no temporaries left: {names:?}");
}

#[test]
fn train_sae_rejects_k_above_latents_and_unknown_hookpoints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ids = sae_fixtures().join("input_ids.json");
    let model = tiny_model();
    let base = ["train-sae", "--model", s(&model), "--token-ids", s(&ids), "--batch-size", "2"];
    let out = tmp.path().join("o");
    let o =
        resa(&[&base[..], &["--hookpoint", "layers.1", "--num-latents", "16", "--k", "32", "--out", s(&out)]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`k` = 32 exceeds the number of latents 16"), "{err}");
    let o = resa(&[&base[..], &["--hookpoint", "layers.7", "--out", s(&out)]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("layers.7") && err.contains("3 layers"), "{err}");
}

/// Trigger data through the reference template and the real R1-Distill tokenizer, into a
/// random model with that vocabulary (skipped without `../shared/data`).
#[test]
fn train_sae_on_real_trigger_data() {
    let shared =
        std::env::var_os("RESA_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    let data = shared.join("train/deepscaler_aime.jsonl");
    let tok = shared.join("tokenizers/deepseek-r1-distill-qwen");
    if !data.is_file() || !tok.join("tokenizer.json").is_file() {
        eprintln!("skipped: {} not found (the shared data folder is absent)", data.display());
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let model_dir = tmp.path().join("model");
    let mut cfg = resa::qwen2::Qwen2Config::tiny();
    cfg.vocab_size = 151_936;
    let device = Default::default();
    let model =
        resa::qwen2::Qwen2ForCausalLM::<burn::backend::Flex>::random(&cfg, 0, &device, burn::tensor::DType::F32);
    model.save_pretrained(&model_dir, StoredDtype::BF16).expect("save");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tok.join(f), model_dir.join(f)).expect("copy tokenizer");
    }
    let out = tmp.path().join("run");
    let o = resa(&[
        "train-sae",
        "--model",
        s(&model_dir),
        "--data",
        s(&data),
        "--ctx-len",
        "64",
        "--hookpoint",
        "layers.1",
        "--num-latents",
        "256",
        "--k",
        "8",
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--out",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("970 rows"), "{err}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("layers.1/cfg.json")).expect("cfg")).expect("json");
    assert_eq!(cfg["num_latents"], 256);
    assert_eq!(cfg["d_in"], resa::qwen2::Qwen2Config::tiny().hidden_size);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 3);
}
