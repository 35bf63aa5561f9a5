//! `cargo xtask bench [ARGS]`: the fixed benchmark workloads through `resa bench` (release
//! build; `--json`, `--only prefill,sae_step`, `--device cuda`); with `--compare`, against
//! PyTorch interleaved ([`crate::compare`]).

use crate::run;

/// Runs the task with the arguments after `bench`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--compare") {
        return crate::compare::task(args);
    }
    let (features, rest) = run::split_features(args)?;
    run::resa(&["bench"], &rest, &features)
}
