//! `cargo xtask bench [ARGS]`: the fixed benchmark workloads through `resa bench` (release
//! build; `--json`, `--only prefill,sae_step`, `--device cuda`).

use crate::run;

/// Runs the task with the arguments after `bench`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    run::resa(&["bench"], &rest, &features)
}
