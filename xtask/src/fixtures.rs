//! `cargo xtask fixtures`: rerun the reference scripts that write the committed fixtures.

use std::process::Command;

use anyhow::{Context, bail};

/// (script, output folder) pairs, relative to the workspace root.
const SCRIPTS: &[(&str, &str)] = &[("scripts/reference/qwen2_reference.py", "crates/resa-qwen2/tests/fixtures")];

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let python = match args {
        [] => "python3".to_string(),
        [flag, path] if flag == "--python" => path.clone(),
        _ => bail!("usage: cargo xtask fixtures [--python PATH]"),
    };
    let root = crate::workspace_root();
    for (script, out) in SCRIPTS {
        eprintln!("fixtures: {python} {script} {out}");
        let status = Command::new(&python)
            .arg(script)
            .arg(out)
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
