//! `cargo xtask <task>`: project chores that are easier in Rust than in shell.
//!
//! - `fixtures [--python PATH]`: regenerate the committed reference fixtures with the
//!   Python reference scripts (needs a venv with `scripts/reference/requirements.txt`).
//! - `tidy`: repository conventions (also run as a `#[test]`).
//! - `bench [ARGS]`: the fixed benchmark workloads (`resa bench`, release build; `--json`,
//!   `--only prefill,sae_step`, `--device cuda`); `scripts/bench/bench_torch.py` runs the same
//!   in PyTorch.
//! - `reproduce NAME|all [--dry-run] [--tiny] [ARGS]`: an experiment of `configs/`
//!   (`resa reproduce`, release build; `--device cuda --dtype bf16` on a GPU);
//!   `reproduce toy` is the toy-world experiment (`resa demo --out runs/toy`);
//!   `reproduce --list` names them all with the paper's numbers.
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
        Some("reproduce") => match args.get(1).map(String::as_str) {
            Some("toy") => resa(&["demo", "--out", "runs/toy"], &args[2..]),
            Some("--list") | None => {
                println!(
                    "{:<26} {:<11} {:>5}  Table 3 in miniature on the built-in toy model (resa demo), CPU",
                    "toy", "Table 3", "–"
                );
                resa(&["reproduce", "--list"], &[])
            }
            // Everything else is an experiment of configs/ (`resa reproduce`).
            Some(_) => resa(&["reproduce"], &args[1..]),
        },
        Some("toy-model") => resa(&["toy-model", "--out", "models/toy-qwen2"], &args[1..]),
        Some("bench") => {
            // Backend features (`--features cuda`) go before `--`: `cargo xtask bench --features cuda -- --device cuda`.
            let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
            let features: Vec<&str> = args[1..split].iter().map(String::as_str).collect();
            let rest = if split < args.len() { &args[split + 1..] } else { &[][..] };
            let mut cmd = vec!["bench"];
            cmd.extend(features.iter().filter(|a| !a.starts_with("--features")).copied());
            let feature = features.iter().find_map(|a| a.strip_prefix("--features=")).map(str::to_string);
            resa_with(&cmd, rest, feature.as_deref())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <fixtures [--python PATH] | tidy | reproduce NAME|all|toy|--list [--dry-run] [--tiny] | toy-model [ARGS] | bench [--features=F] [-- ARGS]>"
            );
            std::process::exit(2)
        }
    }
}

/// Runs the `resa` program (release build) from the workspace root.
fn resa(cmd: &[&str], extra: &[String]) -> anyhow::Result<()> {
    resa_with(cmd, extra, None)
}

fn resa_with(cmd: &[&str], extra: &[String], features: Option<&str>) -> anyhow::Result<()> {
    let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root()).args(["run", "--release", "--bin", "resa"]);
    if let Some(f) = features {
        c.args(["--features", f]);
    }
    let status = c.arg("--").args(cmd).args(extra).status()?;
    anyhow::ensure!(status.success(), "resa {} failed ({status})", cmd.join(" "));
    Ok(())
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
