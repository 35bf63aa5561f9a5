//! What a plan would cost at the paper's rate, and its description (`--dry-run`).

use std::fmt::Write as _;

use crate::experiment::Experiment;
use crate::plan::Step;

/// The paper's Stage II cost: about 20 minutes on 2 GPUs for Resa-STILL-v1's 2 epochs of
/// 1,448 steps (its text: "about 20 minutes and $1"), in GPU-seconds per step.
pub const PAPER_STAGE2_GPU_SECONDS_PER_STEP: f64 = 20.0 * 60.0 * 2.0 / (2.0 * 1448.0);

/// Problems in one evaluation of the paper's six benchmarks.
pub const PAPER_EVAL_PROBLEMS: usize = 30 + 30 + 40 + 500 + 272 + 198;

/// What an experiment's plan costs, from its step counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Stage II optimizer steps over all its runs (a sweep has one per hookpoint); `None`
    /// when the paper gives no steps per epoch for it.
    pub stage2_steps: Option<u64>,
    /// Stage II GPU-hours at `gpu_seconds_per_step`.
    pub stage2_gpu_hours: Option<f64>,
    /// Evaluations of the benchmarks (final adapters and checkpoints).
    pub evaluations: usize,
    /// Evaluation GPU-hours at the given hours per evaluation, when one was given.
    pub eval_gpu_hours: Option<f64>,
}

/// The cost of `stages` for `exp`: Stage II steps from the paper's steps per epoch and
/// the run's epochs (or `max_steps`), at `gpu_seconds_per_step` (default the paper's
/// [`PAPER_STAGE2_GPU_SECONDS_PER_STEP`]); evaluations counted with the checkpoints `every`
/// implies, at `eval_gpu_hours` each when given. Stage I is not estimated (the paper gives
/// no time for it).
pub fn estimate(exp: &Experiment, stages: &[Step], gpu_seconds_per_step: f64, eval_gpu_hours: Option<f64>) -> Budget {
    // Some(0) without a Tune stage; None once a run's steps are unknown.
    let mut steps: Option<u64> = Some(0);
    let mut evaluations = 0usize;
    for stage in stages {
        match stage {
            Step::Tune { cfg, .. } => {
                let per_run = match (cfg.tune().max_steps, exp.steps_per_epoch) {
                    (Some(m), Some(spe)) => Some(m.min(spe * cfg.tune().epochs as u64)),
                    (Some(m), None) => Some(m),
                    (None, Some(spe)) => Some(spe * cfg.tune().epochs as u64),
                    (None, None) => None,
                };
                steps = steps.zip(per_run).map(|(a, b)| a + b);
                if let (Some(n), Some(every)) = (per_run, exp.eval.every) {
                    evaluations += (n / every.max(1)) as usize;
                }
            }
            Step::Eval { .. } => evaluations += 1,
            _ => {}
        }
    }

    Budget {
        stage2_steps: steps,
        stage2_gpu_hours: steps.map(|n| n as f64 * gpu_seconds_per_step / 3600.0),
        evaluations,
        eval_gpu_hours: eval_gpu_hours.map(|h| h * evaluations as f64),
    }
}

impl Budget {
    /// One line: the estimate and where its rates come from.
    pub fn line(&self) -> String {
        let stage2 = match (self.stage2_steps, self.stage2_gpu_hours) {
            (Some(0), _) => "no Stage II".to_string(),
            (Some(n), Some(h)) => format!("Stage II {n} steps ≈ {h:.2} GPU-hours"),
            _ => "Stage II steps unknown (the paper gives no steps per epoch)".to_string(),
        };
        let eval = match self.eval_gpu_hours {
            Some(h) => format!("{} evaluation(s) ≈ {h:.1} GPU-hours", self.evaluations),
            None => format!(
                "{} evaluation(s) of {PAPER_EVAL_PROBLEMS} problems (not estimated: give --eval-gpu-hours)",
                self.evaluations
            ),
        };
        format!("{stage2}; {eval}; Stage I not estimated")
    }
}

/// The plan as text: each stage and its configuration (`--dry-run`).
pub fn describe(exp: &Experiment, stages: &[Step]) -> String {
    let mut s = format!("# {} — {}\n# {}; {}\n", exp.name, exp.title, exp.table, exp.provenance);
    for (i, stage) in stages.iter().enumerate() {
        match stage {
            Step::Stage1 { cfg, hookpoints } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: Stage I ({:?} SAEs) for {} hookpoints from one activation pass into {}",
                    i + 1,
                    cfg.sae().mode(),
                    hookpoints.len(),
                    cfg.out().join("stage1").display()
                );
                let _ = writeln!(s, "hookpoints = {hookpoints:?}");
            }
            Step::Features { model, saes, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa features (reasoning features per hookpoint)\nmodel = {:?}\nsaes = {:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    saes.display().to_string(),
                    out.display().to_string()
                );
            }
            Step::Tune { label, cfg } => {
                let _ = writeln!(s, "\n## stage {}: resa tune ({label})", i + 1);
                s.push_str(&toml::to_string(cfg.file()).unwrap_or_else(|e| format!("(not printable: {e})\n")));
            }
            Step::Eval { label, model, adapter, tasks, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa eval ({label})\nmodel = {:?}{}\nadapter = {}\ntasks = {tasks:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    model.adapter.as_deref().map(|a| format!(" (with {a} merged)")).unwrap_or_default(),
                    adapter.as_ref().map_or("none".to_string(), |a| format!("{:?}", a.display().to_string())),
                    out.display().to_string()
                );
            }
            Step::EvalCheckpoints { label, model, stage2, every, tasks, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa eval of every checkpoint ({label})\nmodel = {:?}\ncheckpoints = {:?} (every {every} steps)\ntasks = {tasks:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    stage2.join("checkpoint-*").display().to_string(),
                    out.display().to_string()
                );
            }
        }
    }
    s
}
