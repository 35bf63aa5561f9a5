//! `cargo xtask <task>`: project chores that are easier in Rust than in shell.
//!
//! - `fixtures [--python PATH]`: regenerate the committed reference fixtures with the
//!   Python reference scripts (needs a venv with `scripts/reference/requirements.txt`).
//! - `tidy`: repository conventions (also run as a `#[test]`).

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
        _ => {
            eprintln!("usage: cargo xtask <fixtures [--python PATH] | tidy>");
            std::process::exit(2)
        }
    }
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
