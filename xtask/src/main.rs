//! `cargo xtask <task>`: project chores that are easier in Rust than in shell.
//!
//! - `fixtures [--python PATH]`: regenerate the committed reference fixtures with the
//!   Python reference scripts (needs a venv with `scripts/reference/requirements.txt`).
//! - `tidy`: repository conventions (also run as a `#[test]`).
//! - `toy-model [ARGS]`: retrain the committed toy model `models/toy-qwen2` from scratch
//!   (`resa toy-model`, release build, CPU; extra arguments are passed on).

mod fixtures;
mod tidy;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fixtures") => fixtures::run(&args[1..]),
        Some("tidy") => {
            let problems = tidy::check(&workspace_root());
            for p in &problems {
                eprintln!("tidy: {p}");
            }
            anyhow::ensure!(problems.is_empty(), "{} tidy problem(s)", problems.len());
            eprintln!("tidy: ok");
            Ok(())
        }
        Some("toy-model") => {
            let root = workspace_root();
            let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&root)
                .args(["run", "--release", "--bin", "resa", "--", "toy-model", "--out", "models/toy-qwen2"])
                .args(&args[1..])
                .status()?;
            anyhow::ensure!(status.success(), "resa toy-model failed ({status})");
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask <fixtures [--python PATH] | tidy | toy-model [ARGS]>");
            std::process::exit(2)
        }
    }
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
