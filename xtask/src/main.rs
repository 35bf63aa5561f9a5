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
//!
//! Every task that runs `resa` takes cargo features as `--features x`, `--features=x` or
//! `-F x` (`cargo xtask reproduce resa-still-v5 --features cuda --device cuda --dtype bf16`).

mod fixtures;
mod run;
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
        Some(task @ ("reproduce" | "toy-model" | "bench")) => {
            let (features, rest) = run::split_features(&args[1..])?;
            match task {
                "reproduce" => match rest.first().map(String::as_str) {
                    Some("toy") => run::resa(&["demo", "--out", "runs/toy"], &rest[1..], &features),
                    Some("--list") | None if rest.len() <= 1 => {
                        println!(
                            "{:<26} {:<11} {:>5}  Table 3 in miniature on the built-in toy model (resa demo), CPU",
                            "toy", "Table 3", "–"
                        );
                        run::resa(&["reproduce", "--list"], &[], &features)
                    }
                    // Everything else is an experiment of configs/ (`resa reproduce`).
                    _ => run::resa(&["reproduce"], &rest, &features),
                },
                "toy-model" => run::resa(&["toy-model", "--out", "models/toy-qwen2"], &rest, &features),
                _ => run::resa(&["bench"], &rest, &features),
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <fixtures [--python PATH] | tidy | reproduce NAME|all|toy|--list [--dry-run] [--tiny] | toy-model [ARGS] | bench [ARGS]> (tasks that run resa take --features F)"
            );
            std::process::exit(2)
        }
    }
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
