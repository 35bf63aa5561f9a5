//! `cargo xtask reproduce NAME|all|toy|toy-paper|--list [--dry-run] [--tiny] [ARGS]`: an
//! experiment of `configs/` through `resa reproduce` (release build); `toy` is the toy-world
//! experiment (`resa demo --out runs/toy`), `toy-paper` the paper's claims on the elicitable
//! toy world with an RL-trained toy source, over seeds (`resa reproduce toy-paper [--world
//! NAME] [--seeds N] [--quick] [--out DIR]`).

use crate::run;

/// Runs the task with the arguments after `reproduce`.
pub fn task(args: &[String]) -> anyhow::Result<()> {
    let (features, rest) = run::split_features(args)?;
    match rest.first().map(String::as_str) {
        Some("toy") => run::resa(&["demo", "--out", "runs/toy"], &rest[1..], &features),
        Some("--list") | None if rest.len() <= 1 => {
            println!(
                "{:<26} {:<11} {:>5}  Table 3 in miniature on the built-in toy model (resa demo), CPU",
                "toy", "Table 3", "–"
            );
            println!(
                "{:<26} {:<11} {:>5}  Tables 3–6 on the elicitable toy world with a toy Tina (LoRA-GRPO) as source, 3 seeds, CPU",
                "toy-paper", "Tables 3–6", "–"
            );
            run::resa(&["reproduce", "--list"], &[], &features)
        }
        // Everything else is an experiment of configs/ (`resa reproduce`).
        _ => run::resa(&["reproduce"], &rest, &features),
    }
}
