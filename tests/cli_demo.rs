//! `resa demo --quick` end to end on the committed toy model: every artifact exists and
//! reloads (SAE folder in sparsify format, PEFT adapters, merged model, evaluation folders,
//! report and figure), and a rerun skips the finished stages.

use std::process::Command;

use burn::backend::Flex;
use burn::tensor::DType;
use resa::qwen2::Qwen2ForCausalLM;
use resa::toy::demo::DemoReport;

#[test]
fn quick_demo_writes_every_artifact_and_reruns_from_them() {
    let model = resa::toy::model::default_dir();
    assert!(model.join("model.safetensors").is_file(), "the committed toy model is missing: {}", model.display());
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("demo");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_resa"))
            .args(["demo", "--quick", "--out", out.to_str().expect("utf8")])
            .output()
            .expect("runs resa")
    };
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for row in ["| Toy model (base) |", "| CoT-free SFT |", "| SAE-Tuning |"] {
        assert!(stdout.contains(row), "{row} missing from {stdout}");
    }

    let report: DemoReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("parses");
    assert_eq!(report.rows.len(), 3);
    for r in &report.rows {
        assert_eq!(r.report.benches[0].problems, 10, "{}", r.name);
    }
    assert!(std::fs::read_to_string(out.join("report.md")).expect("report.md").contains("| SAE-Tuning |"));
    assert!(std::fs::read_to_string(out.join("figures/pass_at_1.svg")).expect("svg").starts_with("<svg"));
    // Every run's training curves, linked from the report.
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## Training curves") && md.contains("sae-tuning/stage2/curves.svg"), "{md}");
    for run in ["sae-tuning/stage1", "sae-tuning/stage2", "cot-free-sft/stage2"] {
        assert!(out.join(run).join("curves.svg").is_file() && out.join(run).join("curves.png").is_file(), "{run}");
    }

    let device = Default::default();
    let sae = resa::sae::SparseCoder::<Flex>::load(&report.sae, &device).expect("SAE folder in sparsify format");
    assert_eq!(sae.num_latents(), 256);
    assert!(report.sae.join("cfg.json").is_file() && report.sae.join("sae.safetensors").is_file());
    for r in &report.rows[1..] {
        let adapter = r.adapter.as_ref().expect("adapter");
        let mut m = Qwen2ForCausalLM::<Flex>::from_pretrained(&model, &device, DType::F32).expect("toy model");
        resa::lora::load_adapter(&mut m, adapter).expect("PEFT adapter reloads");
        assert!(
            out.join(format!("eval/{}", if r.name == "SAE-Tuning" { "sae-tuning" } else { "cot-free-sft" }))
                .join("completions.jsonl")
                .is_file()
        );
    }
    let merged = report.merged.as_ref().expect("merged model");
    Qwen2ForCausalLM::<Flex>::from_pretrained(merged, &device, DType::F32).expect("merged model reloads");
    assert!(merged.join("tokenizer.json").is_file());

    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stage I: up to date, skipped") && err.contains("stage II: up to date, skipped"), "{err}");
}
