//! `cargo xtask toy-model [ARGS]`: retrain the committed toy model `models/toy-qwen2` from
//! scratch through `resa toy-model` (release build, CPU; extra arguments are passed on).

use crate::run;

/// Runs the task with the arguments after `toy-model`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    run::resa(&["toy-model", "--out", "models/toy-qwen2"], &rest, &features)
}
