//! `resa tune` end to end on a tiny random model with the toy world's tokenizer and data:
//! Stage I (SAE from scratch), Stage II (SAE-guided LoRA), merge; then a rerun that skips
//! both stages, and the CoT-free SFT baseline.

mod common;

use std::process::Command;

use common::toy_model;
use resa::qwen2::{Qwen2Config, Qwen2ForCausalLM};
use resa::toy::world::ToyWorld;

fn resa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resa")).args(args).output().expect("runs resa")
}

#[test]
fn tune_runs_both_stages_then_skips_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg_path = common::toy_run(tmp.path(), [200, 10, 10], 5, "", "max_steps = 4\nsave_every = 2\nmerge = true");
    let cfg = cfg_path.to_str().expect("utf8");
    let tb = tmp.path().join("tb");
    let o = resa(&["tune", "--config", cfg, "--tensorboard", tb.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // Both stages' metrics are in TensorBoard event files, one run per stage: Stage II's
    // four steps give four `loss` scalars, Stage I's five steps five `layers.1/fvu` ones.
    let tag_count = |dir: &str, tag: &str| {
        let files: Vec<_> = std::fs::read_dir(tb.join(dir)).expect("event folder").flatten().collect();
        assert_eq!(files.len(), 1, "one event file in {dir}");
        let bytes = std::fs::read(files[0].path()).expect("events");
        let mut field = vec![0x0a, tag.len() as u8];
        field.extend(tag.as_bytes());
        bytes.windows(field.len()).filter(|w| *w == field.as_slice()).count()
    };
    assert_eq!(tag_count("stage2", "loss"), 4);
    assert_eq!(tag_count("stage1", "layers.1/fvu"), 5);
    // stderr is not a terminal here: progress comes as plain lines, each phase's last one
    // with its rate, elapsed time and `done`.
    assert!(err.lines().any(|l| l.starts_with("stage I  5/5 fvu ") && l.ends_with(" · done")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("stage II 4/4 loss ") && l.contains("/s · ")), "{err}");
    assert!(!err.contains('\r'), "no carriage returns off a terminal: {err:?}");
    let run = tmp.path().join("run");
    let sae = resa::sae::SparseCoder::<burn::backend::Flex>::load(run.join("stage1/layers.1"), &Default::default())
        .expect("SAE folder in sparsify format");
    assert_eq!((sae.num_latents(), sae.config().k), (128, 8));
    assert!(run.join("stage2/adapter/adapter_config.json").is_file());
    assert!(run.join("stage2/checkpoint-4/optimizer.safetensors").is_file());
    assert_eq!(std::fs::read_to_string(run.join("stage2/metrics.jsonl")).expect("metrics").lines().count(), 4);
    let mut merged = Qwen2ForCausalLM::<burn::backend::Flex>::from_pretrained(
        run.join("merged"),
        &Default::default(),
        burn::tensor::DType::F32,
    )
    .expect("merged model reloads");
    assert!(run.join("merged/tokenizer.json").is_file());
    assert_eq!(resa::lora::remove(&mut merged), 0);
    // The resolved configuration sits beside the artifacts, every default filled in; run
    // from it, every stage is up to date.
    let resolved = run.join(resa::pipeline::RESOLVED_CONFIG);
    let text = std::fs::read_to_string(&resolved).expect("resolved configuration");
    assert!(text.contains("num_latents = 128") && text.contains("save_every"), "{text}");
    let o = resa(&["tune", "--config", resolved.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("stage II: output up to date"), "{err}");

    let o = resa(&["tune", "--config", cfg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("stage I: output up to date") && err.contains("stage II: output up to date"),
        "{err}"
    );
    // --quiet: no progress and no stage messages, only the results.
    let o = resa(&["--quiet", "tune", "--config", cfg]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("up to date") && err.contains("adapter: "), "{err}");

    // The baseline, with two data-parallel replicas (sharing the CPU).
    let sft = tmp.path().join("sft");
    let o = resa(&[
        "tune",
        "--config",
        cfg,
        "--objective",
        "sft",
        "--data-parallel",
        "2",
        "--out",
        sft.to_str().expect("utf8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(sft.join("stage2/adapter/adapter_model.safetensors").is_file());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sft.join("stage2/run.json")).expect("run.json")).expect("json");
    assert_eq!(run["data_parallel"], 2, "{run}");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(sft.join("stage2/metrics.jsonl")).expect("metrics").lines().next().expect("a step"),
    )
    .expect("json");
    assert_eq!(first["tokens"], 2 * 48, "one chunk per replica: {first}");
}

#[test]
fn tune_reports_config_errors_with_the_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg_path = tmp.path().join("bad.toml");
    std::fs::write(&cfg_path, "out = \"x\"\n[source]\nmodel = \"m\"\n").expect("write");
    let o = resa(&["tune", "--config", cfg_path.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.toml") && err.contains("target"), "{err}");
}

#[test]
fn tune_refuses_a_hookpoint_or_rank_the_models_do_not_have_before_stage_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    toy_model(&model);
    ToyWorld::default().write_splits(tmp.path().join("data"), [20, 2, 2]).expect("data");
    let layers = Qwen2Config::tiny().num_hidden_layers;
    let hidden = Qwen2Config::tiny().hidden_size;
    for (hookpoint, r, named) in
        [(format!("layers.{layers}"), 4, "[sae] hookpoint = "), ("layers.1".to_string(), hidden + 1, "[lora] r = ")]
    {
        let config = format!(
            "out = \"{out}\"\n[source]\nmodel = \"{m}\"\n[target]\nmodel = \"{m}\"\n[data]\ntrigger = \"{d}\"\nelicitation = \"{d}\"\n[sae]\nmode = \"scratch\"\nhookpoint = \"{hookpoint}\"\nnum_latents = 64\nk = 4\n[lora]\nr = {r}\n",
            out = tmp.path().join("run").display(),
            m = model.display(),
            d = tmp.path().join("data/train.jsonl").display(),
        );
        let cfg_path = tmp.path().join("run.toml");
        std::fs::write(&cfg_path, config).expect("config");
        let o = resa(&["tune", "--config", cfg_path.to_str().expect("utf8")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(named) && err.contains("run.toml"), "{err}");
        assert!(!tmp.path().join("run/stage1").exists(), "Stage I started before the check: {err}");
    }
}
