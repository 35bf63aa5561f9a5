//! `cargo xtask reproduce NAME|all|toy-paper|--list [--dry-run] [--tiny] [ARGS]`:
//! `resa reproduce` with the same arguments, on a release build: an experiment of `configs/`,
//! or `toy-paper` (the paper's claims on the elicitable toy world over seeds); `--list` names
//! them all.

use crate::run;

/// Runs the task with the arguments after `reproduce`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    run::resa(&["reproduce"], &rest, &features)
}
