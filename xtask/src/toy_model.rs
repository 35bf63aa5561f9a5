//! `cargo xtask toy-model [--world NAME] [ARGS]`: retrain a committed toy model from scratch
//! through `resa toy-model` (release build, CPU; extra arguments are passed on): world
//! `arith` (the default) into `models/toy-qwen2`, `elicit` into `models/toy-qwen2-elicit`.

use anyhow::bail;

use crate::run;

/// Runs the task with the arguments after `toy-model`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    let world = world_of(&rest)?;
    let out = match world.as_str() {
        "arith" => "models/toy-qwen2",
        "elicit" => "models/toy-qwen2-elicit",
        other => bail!("unknown toy world `{other}`; expected arith or elicit"),
    };
    // `--world` itself goes on to `resa toy-model` with the rest (its default is arith too).
    run::resa(&["toy-model", "--out", out], &rest, &features)
}

/// The value of `--world NAME` / `--world=NAME` in `args` (default `arith`).
fn world_of(args: &[String]) -> anyhow::Result<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--world" {
            return match it.next() {
                Some(v) => Ok(v.clone()),
                None => bail!("--world needs a value: arith or elicit"),
            };
        }
        if let Some(v) = a.strip_prefix("--world=") {
            return Ok(v.to_string());
        }
    }
    Ok("arith".into())
}
