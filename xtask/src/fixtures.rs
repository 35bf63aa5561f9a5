//! `cargo xtask fixtures`: rerun the reference scripts that write the committed fixtures.

use std::process::Command;

use anyhow::{Context, bail};

/// Each script with its arguments, relative to the workspace root (`../shared/data` is the
/// shared data folder the data fixtures are computed from).
const SCRIPTS: &[&[&str]] = &[
    &["scripts/reference/qwen2_reference.py", "crates/resa-qwen2/tests/fixtures"],
    &[
        "scripts/reference/sae_reference.py",
        "crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old",
        "crates/resa-sae/tests/fixtures",
    ],
    &["scripts/reference/lora_reference.py", "crates/resa-qwen2/tests/fixtures", "crates/resa-lora/tests/fixtures"],
    &["scripts/reference/data_reference.py", "crates/resa-data/tests/fixtures"],
    &[
        "scripts/reference/stage2_reference.py",
        "crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old",
        "crates/resa-sae/tests/fixtures/signum/final/layers.1",
        "crates/resa-lora/tests/fixtures/all7_tied_gqa/adapter",
        "crates/resa-tune/tests/fixtures",
    ],
    &[
        "scripts/reference/grading_reference.py",
        "../shared/data/eval",
        "crates/resa-eval/tests/fixtures/grading_cases.jsonl",
    ],
    &["scripts/reference/chunks_reference.py", "../shared/data", "crates/resa-data/tests/fixtures/chunks.json"],
    &["scripts/reference/gmm_reference.py", "crates/resa-features/tests/fixtures/gmm.json"],
];

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let python = match args {
        [] => "python3".to_string(),
        [flag, path] if flag == "--python" => path.clone(),
        _ => bail!("usage: cargo xtask fixtures [--python PATH]"),
    };
    let root = crate::workspace_root();
    for args in SCRIPTS {
        let script = args[0];
        eprintln!("fixtures: {python} {}", args.join(" "));
        let status = Command::new(&python)
            .args(*args)
            .current_dir(&root)
            .env("SPARSIFY_DISABLE_TRITON", "1")
            .status()
            .with_context(|| format!("running {python}"))?;
        if !status.success() {
            bail!("{script} failed ({status}); install scripts/reference/requirements.txt into that Python");
        }
    }
    Ok(())
}
