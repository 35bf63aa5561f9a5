//! `cargo xtask <task>`: project chores that are easier in Rust than in shell.
//!
//! - `fixtures [--python PATH]`: regenerate the committed reference fixtures with the
//!   Python reference scripts (needs a venv with `scripts/reference/requirements.txt`).
//! - `tidy`: repository conventions (also run as a `#[test]`).
//! - `bench [ARGS]`: the fixed benchmark workloads (`resa bench`, release build; `--json`,
//!   `--only prefill,sae_step`, `--device cuda`); `scripts/bench/bench_torch.py` runs the same
//!   in PyTorch. `bench --compare [--python PATH | --venv DIR] [--rounds N] [--only W,W]`
//!   runs both interleaved and prints their ratios against the goals.
//! - `reproduce NAME|all|toy-paper [--dry-run] [--tiny] [ARGS]`: an experiment of `configs/`
//!   or the toy paper (`resa reproduce`, release build; `--device cuda --dtype bf16` on a
//!   GPU); `reproduce --list` names them all with the paper's numbers.
//! - `toy-model [--world NAME] [ARGS]`: retrain a committed toy model from scratch (`arith`:
//!   `models/toy-qwen2`; `elicit`: `models/toy-qwen2-elicit`; `resa toy-model`, release
//!   build, CPU; extra arguments are passed on).
//!
//! Every task that runs `resa` takes cargo features as `--features x`, `--features=x` or
//! `-F x` (`cargo xtask reproduce resa-still-v5 --features cuda --device cuda --dtype bf16`).

mod bench;
mod compare;
mod fixtures;
mod reproduce;
mod run;
mod tidy;
mod toy_model;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("fixtures") => fixtures::run(rest),
        Some("tidy") => tidy::task(),
        Some("reproduce") => reproduce::task(rest),
        Some("toy-model") => toy_model::task(rest),
        Some("bench") => bench::task(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <fixtures [--python PATH] | tidy | reproduce NAME|all|toy-paper|--list [--dry-run] [--tiny] | toy-model [--world NAME] [ARGS] | bench [ARGS]> (tasks that run resa take --features F)"
            );
            std::process::exit(2)
        }
    }
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}
