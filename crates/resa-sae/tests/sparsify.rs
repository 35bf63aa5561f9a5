//! resa-sae against EleutherAI sparsify: fixtures written by
//! `scripts/reference/sae_reference.py` (sparsify's own Trainer on a tiny Qwen2).

mod common;

use common::*;
use resa_qwen2::safetensors_io::SafetensorsReader;
use resa_sae::{OptimizerKind, SaeTrainer, SparseCoder, TrainConfig};

const HOOKS: [&str; 2] = ["layers.1", "layers.2.mlp"];
const STEPS: usize = 4;

fn run_case(case: &str, cfg: TrainConfig) {
    let device = Default::default();
    let dir = fixtures().join(case);
    let steps = SafetensorsReader::open_file(dir.join("steps.safetensors")).expect("steps");
    for hp in HOOKS {
        let init = SparseCoder::<B>::load(dir.join("init").join(hp), &device).expect("init SAE");
        let mut trainer = SaeTrainer::<AD>::new(init, cfg.clone()).expect("trainer");
        for step in 0..STEPS {
            let acts: burn::tensor::Tensor<B, 2> = read(&steps, &format!("acts.{hp}.{step}"), &device);
            let m = trainer.step(acts).expect("step");
            let want = to_vec(read::<B, 1>(&steps, &format!("fvu.{hp}.{step}"), &device))[0];
            assert!(
                (m.fvu - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{case} {hp} step {step}: fvu {} vs sparsify {want}",
                m.fvu
            );
        }
        let live = trainer.training_params();
        for (name, ours) in [("encoder.weight", live.encoder_weight.clone()), ("W_dec", live.w_dec.clone())] {
            assert_close(
                &format!("{case} {hp} y.{name}"),
                ours,
                read(&steps, &format!("y.{hp}.{name}"), &device),
                1e-5,
            );
        }
        for (name, ours) in [("encoder.bias", live.encoder_bias.clone()), ("b_dec", live.b_dec.clone())] {
            assert_close(
                &format!("{case} {hp} y.{name}"),
                ours,
                read(&steps, &format!("y.{hp}.{name}"), &device),
                1e-5,
            );
        }
        let counts = trainer.tokens_since_fired().into_data().convert::<i64>().to_vec::<i64>().expect("counts");
        let want = read_int::<B, 1>(&steps, &format!("counts.{hp}"), &device)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("counts");
        assert_eq!(counts, want, "{case} {hp}: tokens since fired");
        let saved = SparseCoder::<B>::load(dir.join("final").join(hp), &device).expect("final SAE");
        let ours = trainer.to_sae();
        assert_close(&format!("{case} {hp} saved encoder"), ours.encoder_weight, saved.encoder_weight, 1e-5);
        assert_close(&format!("{case} {hp} saved W_dec"), ours.w_dec, saved.w_dec, 1e-5);
        assert_close(&format!("{case} {hp} saved encoder bias"), ours.encoder_bias, saved.encoder_bias, 1e-5);
        assert_close(&format!("{case} {hp} saved b_dec"), ours.b_dec, saved.b_dec, 1e-5);
    }
}

#[test]
fn signum_scratch_with_auxk_matches_sparsify_trainer() {
    run_case("signum", TrainConfig { auxk_alpha: 1.0 / 32.0, dead_feature_threshold: 40, ..TrainConfig::default() });
}

#[test]
fn signum_with_micro_batches_gives_the_same_step() {
    run_case(
        "signum",
        TrainConfig {
            auxk_alpha: 1.0 / 32.0,
            dead_feature_threshold: 40,
            micro_batch_tokens: Some(7),
            ..TrainConfig::default()
        },
    );
}

#[test]
fn adam_finetune_with_multi_topk_matches_sparsify_trainer() {
    run_case(
        "adam",
        TrainConfig {
            optimizer: OptimizerKind::Adam,
            lr_warmup_steps: 2,
            total_steps: STEPS as u64,
            finetune: true,
            ..TrainConfig::default()
        },
    );
}

#[test]
fn forward_matches_sparsify_including_auxk() {
    let device = Default::default();
    let dir = fixtures().join("encode");
    let sae = SparseCoder::<B>::load(dir.join("sae"), &device).expect("SAE");
    let input = SafetensorsReader::open_file(dir.join("input.safetensors")).expect("input");
    let expected = SafetensorsReader::open_file(dir.join("expected.safetensors")).expect("expected");
    let x = read::<B, 2>(&input, "x", &device);
    let dead = read_int::<B, 1>(&input, "dead_mask", &device).greater_elem(0);
    let out = sae.forward(x, Some(dead)).expect("forward");
    let (idx, order) = out.top_indices.clone().sort_with_indices(1);
    let acts = out.top_acts.clone().gather(1, order);
    let want_idx = read_int::<B, 2>(&expected, "top_indices", &device);
    assert_eq!(
        idx.into_data().convert::<i64>().to_vec::<i64>().expect("ids"),
        want_idx.into_data().convert::<i64>().to_vec::<i64>().expect("ids")
    );
    assert_close("top_acts", acts, read(&expected, "top_acts", &device), 1e-5);
    assert_close("sae_out", out.sae_out, read(&expected, "sae_out", &device), 1e-5);
    for (name, ours) in [("fvu", out.fvu), ("auxk_loss", out.auxk_loss)] {
        let (a, b) = (to_vec(ours)[0], to_vec(read::<B, 1>(&expected, name, &device))[0]);
        assert!(b > 0.0 && (a - b).abs() <= 1e-5 * b, "{name}: {a} vs sparsify {b}");
    }
}

#[test]
fn loads_old_cfg_without_activation_and_with_unknown_keys() {
    let device = Default::default();
    let old = SparseCoder::<B>::load(fixtures().join("old_cfg"), &device).expect("old cfg");
    let new = SparseCoder::<B>::load(fixtures().join("signum/final/layers.1"), &device).expect("new cfg");
    assert_eq!(old.config(), new.config());
}

#[test]
fn load_many_gives_every_hookpoint_in_natural_order() {
    let device = Default::default();
    let all = SparseCoder::<B>::load_many(fixtures().join("signum/final"), &device).expect("load_many");
    let names: Vec<_> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, HOOKS);
}

/// Writes an SAE trained here, with inputs and our reconstruction, for
/// `python scripts/reference/sae_reference.py --check target/tmp/interop/sae-rust` (which
/// loads it with sparsify and compares its forward). The folder must also load here.
#[test]
fn writes_a_folder_for_the_sparsify_interop_check() {
    let device = Default::default();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop/sae-rust");
    let steps = SafetensorsReader::open_file(fixtures().join("signum/steps.safetensors")).expect("steps");
    let sae = SparseCoder::<B>::random(resa_sae::SaeConfig::new(64, 128, 8), 5, &device).expect("sae");
    let mut trainer = SaeTrainer::<AD>::new(sae, TrainConfig::default()).expect("trainer");
    for step in 0..STEPS {
        trainer.step(read(&steps, &format!("acts.layers.1.{step}"), &device)).expect("step");
    }
    let sae = trainer.to_sae();
    sae.save(&dir).expect("save");
    let x: burn::tensor::Tensor<B, 2> = read(&steps, "acts.layers.1.0", &device);
    let out = sae.forward(x.clone(), None).expect("forward");
    let tensors = vec![
        resa_qwen2::safetensors_io::OwnedTensor::from_f32(
            "x",
            &to_vec(x),
            vec![32, 64],
            resa_qwen2::safetensors_io::StoredDtype::F32,
        ),
        resa_qwen2::safetensors_io::OwnedTensor::from_f32(
            "sae_out",
            &to_vec(out.sae_out.clone()),
            vec![32, 64],
            resa_qwen2::safetensors_io::StoredDtype::F32,
        ),
    ];
    resa_qwen2::safetensors_io::write_safetensors(dir.join("check.safetensors"), &tensors, None).expect("write");
    let back = SparseCoder::<B>::load(&dir, &device).expect("reload");
    assert_close(
        "reloaded forward",
        back.forward(read(&steps, "acts.layers.1.0", &device), None).expect("fwd").sae_out,
        out.sae_out,
        0.0,
    );
}
