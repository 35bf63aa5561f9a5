//! Invariants and bad inputs of the sparse coder and its trainer.

mod common;

use burn::tensor::{Distribution, Tensor, TensorData};
use common::*;
use resa_sae::{Error, SaeConfig, SaeTrainer, SparseCoder, TrainConfig, remove_parallel_component};

fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
    Default::default()
}

fn random_sae(d: usize, l: usize, k: usize) -> SparseCoder<B> {
    SparseCoder::<B>::random(SaeConfig::new(d, l, k), 3, &device()).expect("sae")
}

fn row_norms(w: Tensor<B, 2>) -> Vec<f32> {
    to_vec(w.powi_scalar(2).sum_dim(1).sqrt())
}

#[test]
fn exactly_k_distinct_active_latents_and_sparse_decode_equals_dense() {
    let sae = random_sae(16, 96, 5);
    let x = Tensor::<B, 2>::random([40, 16], Distribution::Normal(0.0, 1.0), &device());
    let enc = sae.encode(x).expect("encode");
    assert_eq!(enc.top_indices.dims(), [40, 5]);
    let ids = enc.top_indices.clone().into_data().convert::<i64>().to_vec::<i64>().expect("ids");
    for row in ids.chunks(5) {
        let mut r = row.to_vec();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), 5, "duplicate latent in {row:?}");
    }
    // The k selected values are the k largest pre-activations of each row.
    let kth = enc.top_acts.clone().min_dim(1);
    let above = enc.pre_acts.clone().greater_equal(kth).int().sum_dim(1);
    assert!(to_vec(above.float()).iter().all(|&c| c == 5.0));
    // Dense reference: z = scatter(acts) [n, L], x̂ = z W_dec + b_dec.
    let z = Tensor::<B, 2>::zeros([40, 96], &device()).scatter(
        1,
        enc.top_indices.clone(),
        enc.top_acts.clone(),
        burn::tensor::IndexingUpdateOp::Add,
    );
    let dense = z.matmul(sae.w_dec.clone()) + sae.b_dec.clone().unsqueeze_dim(0);
    assert_close("sparse vs dense decode", sae.decode(enc.top_acts, enc.top_indices), dense, 1e-5);
}

#[test]
fn decoder_rows_are_unit_norm_after_init_and_normalisation() {
    let mut sae = random_sae(8, 32, 4);
    assert!(row_norms(sae.w_dec.clone()).iter().all(|n| (n - 1.0).abs() < 1e-6));
    sae.w_dec = sae.w_dec.clone() * 3.5;
    sae.normalize_decoder();
    assert!(row_norms(sae.w_dec.clone()).iter().all(|n| (n - 1.0).abs() < 1e-6));
}

#[test]
fn parallel_gradient_component_is_removed() {
    let sae = random_sae(8, 32, 4);
    let w = sae.w_dec.clone();
    let g = Tensor::<B, 2>::random([32, 8], Distribution::Normal(0.0, 1.0), &device());
    let r = remove_parallel_component(g.clone(), w.clone());
    let dots = to_vec((r.clone() * w.clone()).sum_dim(1));
    assert!(dots.iter().all(|d| d.abs() < 1e-5), "{dots:?}");
    // What is left is the orthogonal part: removing again changes nothing.
    assert_close("idempotent", remove_parallel_component(r.clone(), w.clone()), r.clone(), 1e-5);
    // A gradient along the rows is removed entirely.
    assert_close("parallel only", remove_parallel_component(w.clone() * 2.0, w.clone()), w.zeros_like(), 1e-5);
}

#[test]
fn a_training_step_lowers_the_loss_on_a_fixed_batch() {
    let sae = random_sae(16, 64, 4);
    let mut t = SaeTrainer::<AD>::new(sae, TrainConfig { lr: Some(1e-2), ..TrainConfig::default() }).expect("trainer");
    let x = Tensor::<B, 2>::random([64, 16], Distribution::Normal(0.0, 1.0), &device());
    let first = t.step(x.clone()).expect("step").fvu;
    let mut last = first;
    for _ in 0..30 {
        last = t.step(x.clone()).expect("step").fvu;
    }
    assert!(last < 0.8 * first, "fvu {first} → {last}");
}

#[test]
fn nan_activations_stop_training_and_leave_the_parameters() {
    let sae = random_sae(8, 32, 4);
    let mut t = SaeTrainer::<AD>::new(sae, TrainConfig::default()).expect("trainer");
    let good = Tensor::<B, 2>::random([16, 8], Distribution::Normal(0.0, 1.0), &device());
    t.step(good).expect("step");
    let before = t.training_params().encoder_weight.clone();
    let mut v = vec![0.5f32; 16 * 8];
    v[3] = f32::NAN;
    let bad = Tensor::<B, 2>::from_data(TensorData::new(v, [16, 8]), &device());
    assert!(matches!(t.step(bad), Err(Error::NonFiniteLoss { step: 1, .. })));
    assert_close("unchanged", t.training_params().encoder_weight.clone(), before, 0.0);
    assert_eq!(t.step_count(), 1);
}

#[test]
fn wrong_width_is_a_width_error() {
    let sae = random_sae(8, 32, 4);
    let x = Tensor::<B, 2>::zeros([3, 9], &device());
    assert!(matches!(sae.encode(x.clone()), Err(Error::Width { d_in: 8, width: 9 })));
    let mut t = SaeTrainer::<AD>::new(sae, TrainConfig::default()).expect("trainer");
    assert!(matches!(t.step(x), Err(Error::Width { d_in: 8, width: 9 })));
}

#[test]
fn save_then_load_round_trips_and_leaves_no_temporary_folders() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = random_sae(8, 32, 4);
    let dir = tmp.path().join("layers.3");
    sae.save(&dir).expect("save");
    sae.save(&dir).expect("save over an existing folder");
    let back = SparseCoder::<B>::load(&dir, &device()).expect("load");
    assert_eq!(back.config(), sae.config());
    assert_close("W_dec", back.w_dec, sae.w_dec, 0.0);
    let names: Vec<_> = std::fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("layers.3")]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cfg.json")).expect("cfg")).expect("json");
    for key in [
        "activation",
        "expansion_factor",
        "normalize_decoder",
        "num_latents",
        "k",
        "multi_topk",
        "skip_connection",
        "transcode",
        "d_in",
    ] {
        assert!(cfg.get(key).is_some(), "cfg.json lacks {key}");
    }
}

#[test]
fn a_damaged_sae_written_by_resa_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("layers.2");
    random_sae(8, 32, 4).save(&dir).expect("save");
    assert!(dir.join("resa-manifest.json").is_file());
    let weights = dir.join("sae.safetensors");
    let mut bytes = std::fs::read(&weights).expect("weights");
    let i = bytes.len() - 3;
    bytes[i] ^= 0x10;
    std::fs::write(&weights, &bytes).expect("damage");
    let err = SparseCoder::<B>::load(&dir, &device()).err().expect("refused").to_string();
    assert!(err.contains("sae.safetensors") && err.contains("hash"), "{err}");
    // Without the manifest (a folder from sparsify) it loads as it is.
    std::fs::remove_file(dir.join("resa-manifest.json")).expect("rm");
    assert!(SparseCoder::<B>::load(&dir, &device()).is_ok());
}

fn sae_folder_with(cfg: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    random_sae(8, 32, 4).save(tmp.path()).expect("save");
    // A hand-edited folder (as one from elsewhere): no manifest of what resa wrote.
    std::fs::remove_file(tmp.path().join("resa-manifest.json")).expect("rm manifest");
    std::fs::write(tmp.path().join("cfg.json"), cfg).expect("write cfg");
    tmp
}

#[test]
fn bad_cfg_json_is_rejected_with_the_field_named() {
    let cases = [
        (r#"{"num_latents": 32, "k": 40, "d_in": 8}"#, "`k` = 40 exceeds the number of latents 32"),
        (r#"{"num_latents": 32, "k": 4"#, "EOF"),
        (r#"{"num_latents": 32, "k": 4}"#, "missing field `d_in`"),
        (r#"{"num_latents": 32, "k": 4, "d_in": 8, "activation": "relu"}"#, "unknown variant `relu`"),
        (r#"{"num_latents": 32, "k": 0, "d_in": 8}"#, "`k` must be positive"),
    ];
    for (cfg, want) in cases {
        let dir = sae_folder_with(cfg);
        let err = SparseCoder::<B>::load(dir.path(), &device()).expect_err(cfg);
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains("cfg.json"), "{cfg}: {msg}");
    }
    let dir = sae_folder_with(r#"{"num_latents": 32, "k": 4, "d_in": 8, "transcode": true}"#);
    assert!(matches!(SparseCoder::<B>::load(dir.path(), &device()), Err(Error::Unsupported { .. })));
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sae = random_sae(8, 32, 4);
    sae.save(tmp.path()).expect("save");
    std::fs::remove_file(tmp.path().join("resa-manifest.json")).expect("rm manifest");
    let keep: Vec<_> = sae.named_tensors().expect("tensors").into_iter().filter(|t| t.name != "W_dec").collect();
    resa_qwen2::safetensors_io::write_safetensors(tmp.path().join("sae.safetensors"), &keep, None).expect("write");
    let err = SparseCoder::<B>::load(tmp.path(), &device()).expect_err("missing");
    assert!(err.to_string().contains("`W_dec` is missing"), "{err}");

    std::fs::write(tmp.path().join("cfg.json"), r#"{"num_latents": 64, "k": 4, "d_in": 8}"#).expect("cfg");
    sae.save(tmp.path().join("x")).expect("save");
    std::fs::copy(tmp.path().join("x/sae.safetensors"), tmp.path().join("sae.safetensors")).expect("copy");
    let err = SparseCoder::<B>::load(tmp.path(), &device()).expect_err("shape");
    assert!(err.to_string().contains("encoder.weight") && err.to_string().contains("[64, 8]"), "{err}");

    let err = SparseCoder::<B>::load(tmp.path().join("nowhere"), &device()).expect_err("no folder");
    assert!(err.to_string().contains("cfg.json"), "{err}");
}

#[test]
fn groupmax_picks_the_largest_of_each_group() {
    let mut cfg = SaeConfig::new(8, 32, 4);
    cfg.activation = resa_sae::Activation::GroupMax;
    let sae = SparseCoder::<B>::random(cfg, 1, &device()).expect("sae");
    let x = Tensor::<B, 2>::random([10, 8], Distribution::Normal(0.0, 1.0), &device());
    let enc = sae.encode(x).expect("encode");
    let ids = enc.top_indices.into_data().convert::<i64>().to_vec::<i64>().expect("ids");
    let pre = to_vec(enc.pre_acts);
    for (r, row) in ids.chunks(4).enumerate() {
        for (g, &i) in row.iter().enumerate() {
            assert_eq!(i as usize / 8, g, "index {i} is not in group {g}");
            let group = &pre[r * 32 + g * 8..r * 32 + g * 8 + 8];
            assert_eq!(pre[r * 32 + i as usize], group.iter().copied().fold(f32::MIN, f32::max));
        }
    }
}

/// An SAE folder holding NaN is refused at load, naming the tensor.
#[test]
fn non_finite_weights_are_refused_at_load() {
    use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("layers.0");
    random_sae(8, 16, 2).save(&dir).expect("save");
    let path = dir.join("sae.safetensors");
    let r = SafetensorsReader::open_file(&path).expect("open");
    let tensors: Vec<OwnedTensor> = r
        .keys()
        .map(|k| {
            let (mut v, s) = r.read_f32_any(k).expect("read");
            if k == "W_dec" {
                v[5] = f32::INFINITY;
            }
            OwnedTensor::from_f32(k, &v, s, StoredDtype::F32)
        })
        .collect();
    drop(r);
    write_safetensors(&path, &tensors, None).expect("write");
    // A folder from elsewhere: no manifest (a resa folder edited so would fail its hashes).
    std::fs::remove_file(dir.join("resa-manifest.json")).expect("rm manifest");
    let err = SparseCoder::<B>::load(&dir, &device()).expect_err("refused");
    assert!(err.to_string().contains("`W_dec`") && err.to_string().contains("non-finite"), "{err}");
}

#[test]
fn wrong_tensor_names_in_an_sae_folder_are_named_as_an_sae_problem() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("layers.0");
    random_sae(8, 16, 2).save(&dir).expect("save");
    let weights = dir.join("sae.safetensors");
    let reader = resa_qwen2::safetensors_io::SafetensorsReader::open_file(&weights).expect("read");
    let mut tensors = Vec::new();
    for key in ["encoder.weight", "encoder.bias", "W_dec"] {
        let (v, shape) = reader.read_f32_any(key).expect("tensor");
        // `b_dec` is renamed: one missing, one unexpected name.
        tensors.push(resa_qwen2::safetensors_io::OwnedTensor::from_f32(
            key,
            &v,
            shape,
            resa_qwen2::safetensors_io::StoredDtype::F32,
        ));
    }
    let (v, shape) = reader.read_f32_any("b_dec").expect("b_dec");
    tensors.push(resa_qwen2::safetensors_io::OwnedTensor::from_f32(
        "decoder.bias",
        &v,
        shape,
        resa_qwen2::safetensors_io::StoredDtype::F32,
    ));
    drop(reader);
    resa_qwen2::safetensors_io::write_safetensors(&weights, &tensors, None).expect("write");
    std::fs::remove_file(dir.join("resa-manifest.json")).expect("rm manifest");
    match SparseCoder::<B>::load(&dir, &device()) {
        Err(e @ Error::SaeTensors { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("decoder.bias") && msg.contains("sparsify SAE") && !msg.contains("Qwen2"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a renamed tensor must be refused"),
    }
}

/// On the CPU backends the step's sparse parts run on the host (`resa_sae::host`); the
/// tensor path (what a GPU runs) gives the same steps: losses, AuxK once latents die, the
/// Multi-TopK term, and the trained parameters, with Adam and with Signum, TopK and GroupMax.
#[test]
fn the_host_step_equals_the_tensor_step() {
    use resa_sae::{Activation, OptimizerKind};
    // Without Multi-TopK few latents fire, so some die and AuxK runs; with it, 4k fire.
    for (optimizer, steps, multi_topk, activation, k) in [
        (OptimizerKind::Adam, 6, false, Activation::TopK, 3),
        (OptimizerKind::Signum, 3, true, Activation::TopK, 3),
        (OptimizerKind::Adam, 3, false, Activation::GroupMax, 4),
    ] {
        let mut cfg = SaeConfig::new(16, 256, k);
        cfg.multi_topk = multi_topk;
        cfg.activation = activation;
        let sae = SparseCoder::<B>::random(cfg, 3, &device()).expect("sae");
        let train = TrainConfig {
            optimizer,
            auxk_alpha: 1.0 / 32.0,
            dead_feature_threshold: 50,
            micro_batch_tokens: Some(24),
            ..TrainConfig::default()
        };
        let mut host = SaeTrainer::<AD>::new(sae.clone(), train.clone()).expect("trainer");
        let mut tensor = SaeTrainer::<AD>::new(sae, train).expect("trainer").with_tensor_path();
        let mut saw_auxk = false;
        for step in 0..steps {
            let x = Tensor::<B, 2>::random([40, 16], Distribution::Normal(0.0, 1.0), &device());
            let a = host.step(x.clone()).expect("host step");
            let b = tensor.step(x).expect("tensor step");
            for (what, u, v) in [
                ("fvu", a.fvu, b.fvu),
                ("auxk", a.auxk_loss, b.auxk_loss),
                ("multi", a.multi_topk_fvu, b.multi_topk_fvu),
            ] {
                assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "{optimizer:?} step {step}: {what} {u} vs {v}");
            }
            assert_eq!(a.dead_fraction, b.dead_fraction, "{optimizer:?} step {step}");
            saw_auxk |= a.auxk_loss > 0.0;
        }
        assert!(saw_auxk || multi_topk || activation == Activation::GroupMax, "{optimizer:?}: AuxK ran");
        let (p, q) = (host.to_sae(), tensor.to_sae());
        assert_close("encoder.weight", p.encoder_weight, q.encoder_weight, 1e-4);
        assert_close("encoder.bias", p.encoder_bias, q.encoder_bias, 1e-4);
        assert_close("W_dec", p.w_dec, q.w_dec, 1e-4);
        assert_close("b_dec", p.b_dec, q.b_dec, 1e-4);
    }
}
