//! LoRA-GRPO through the trainer on the tiny fixture model: the reward it is given goes up,
//! the metrics line carries reward, KL and completion length, a run killed and resumed ends
//! with the same adapter, and bad settings are refused.

mod common;

use common::*;
use resa_lora::LoraConfig;
use resa_qwen2::Sampling;
use resa_tune::{Error, Grpo, GrpoConfig, TuneConfig, train_adapters};

/// The token the reward asks for.
const WANTED: u32 = 42;

fn grpo() -> Grpo<'static> {
    let cfg = GrpoConfig {
        group_size: 8,
        max_new_tokens: 6,
        sampling: Sampling::Sample { temperature: 1.0, top_p: 1.0, top_k: None },
        beta: 0.01,
        pad_token_id: 0,
        stop_token_ids: vec![],
        seed: 5,
        ..GrpoConfig::default()
    };
    // The fraction of completion tokens that are WANTED.
    let reward = |_: &[u32], c: &[u32]| c.iter().filter(|&&t| t == WANTED).count() as f32 / c.len().max(1) as f32;
    Grpo::new(cfg, Box::new(reward)).expect("grpo")
}

fn lora() -> LoraConfig {
    LoraConfig::new(4, 8.0, 0.0, &resa_lora::ALL_LINEAR)
}

/// Prompts left-padded with 0 to one length.
fn prompts() -> Vec<Vec<u32>> {
    chunks(8, 5).into_iter().enumerate().map(|(i, p)| [vec![0; i % 3], p[..5 - i % 3].to_vec()].concat()).collect()
}

fn rewards(dir: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["reward"].as_f64().expect("reward"))
        .collect()
}

#[test]
fn grpo_raises_the_reward_and_records_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = TuneConfig {
        lr: 3e-2,
        epochs: 100,
        max_steps: Some(24),
        batch_size: 2,
        save_every: 100,
        out: tmp.path().join("run"),
        ..TuneConfig::default()
    };
    let objective = grpo();
    let mut seen = Vec::new();
    train_adapters(model(&lora()), &lora(), &objective, &prompts(), &cfg, &mut |m| {
        seen.push(m.clone());
        true
    })
    .expect("train");
    let r = rewards(&cfg.out);
    assert_eq!(r.len(), 24);
    let first = r[..6].iter().sum::<f64>() / 6.0;
    let last = r[18..].iter().sum::<f64>() / 6.0;
    assert!(last > first + 0.2, "reward {first:.3} → {last:.3}: {r:?}");
    // The metrics line and on_step carry GRPO's measurements.
    let m = seen.last().expect("steps");
    for key in ["reward", "kl", "completion_length", "flat_groups"] {
        assert!(m.objective.get(key).is_some_and(|v| v.is_finite()), "{key}: {:?}", m.objective);
    }
    assert!(m.objective["completion_length"] > 0.0 && m.objective["completion_length"] <= 6.0);
    assert!(m.objective["kl"] > 0.0, "the policy moved away from the reference: {:?}", m.objective);
    // The first step starts at the reference policy: no KL yet.
    assert!(seen[0].objective["kl"].abs() < 1e-6, "{:?}", seen[0].objective);
}

#[test]
fn a_resumed_grpo_run_samples_and_ends_as_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |out: &std::path::Path, stop_after: Option<u64>| {
        let cfg = TuneConfig {
            lr: 1e-2,
            epochs: 100,
            max_steps: Some(6),
            batch_size: 2,
            save_every: 2,
            out: out.to_path_buf(),
            resume: true,
            ..TuneConfig::default()
        };
        let objective = grpo();
        train_adapters(model(&lora()), &lora(), &objective, &prompts(), &cfg, &mut |m| {
            stop_after.is_none_or(|s| m.step < s)
        })
        .expect("train");
    };
    let whole = tmp.path().join("whole");
    run(&whole, None);
    let split = tmp.path().join("split");
    run(&split, Some(4));
    run(&split, None);
    assert_eq!(adapter_values(&whole.join("adapter")), adapter_values(&split.join("adapter")));
    assert_eq!(rewards(&whole), rewards(&split), "the same samples before and after the resume");
}

#[test]
fn bad_grpo_settings_are_refused() {
    let reward = || Box::new(|_: &[u32], _: &[u32]| 0.0f32);
    for (cfg, field) in [
        (GrpoConfig { group_size: 1, ..GrpoConfig::default() }, "group_size"),
        (GrpoConfig { max_new_tokens: 0, ..GrpoConfig::default() }, "max_new_tokens"),
        (GrpoConfig { beta: -1.0, ..GrpoConfig::default() }, "beta"),
        (GrpoConfig { clip_eps: 1.5, ..GrpoConfig::default() }, "clip_eps"),
    ] {
        match Grpo::new(cfg, reward()) {
            Err(e @ Error::Options { .. }) => assert!(e.to_string().contains(field), "{e}"),
            Err(e) => panic!("{field}: {e}"),
            Ok(_) => panic!("{field} accepted"),
        }
    }
    // A stop id outside the vocabulary is refused before the first step.
    let tmp = tempfile::tempdir().expect("tmp");
    let objective =
        Grpo::new(GrpoConfig { stop_token_ids: vec![100_000], ..GrpoConfig::default() }, reward()).expect("grpo");
    let cfg = TuneConfig { out: tmp.path().join("o"), batch_size: 2, ..TuneConfig::default() };
    let err = train_adapters(model(&lora()), &lora(), &objective, &prompts(), &cfg, &mut |_| true)
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("100000"), "{err}");
}
