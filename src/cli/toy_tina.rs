//! `resa toy-tina`: LoRA-GRPO on a built-in toy model (a toy Tina, the RL-trained source of
//! the paper's central experiment; by default on the `elicit` world), then the base and the
//! toy Tina on the same held-out problems and seeds, with the paired difference (see
//! `resa::toy::tina`).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::DeviceArgs;
use resa::toy::compare::ToyEvalConfig;
use resa::toy::tina::{ToyTinaConfig, run_toy_tina, toy_tina_markdown};
use resa::toy::world::World;
use resa::with_backend;

use super::progress::Reporter;

/// Arguments of `resa toy-tina`.
#[derive(Debug, clap::Args)]
pub struct ToyTinaArgs {
    /// Run folder (a rerun resumes training and evaluation).
    #[arg(long, default_value = "toy-tina")]
    pub out: PathBuf,
    /// The toy world (`elicit`, where RL has something to elicit, or `arith`, the demo's):
    /// its training problems, its test split and its committed toy model.
    #[arg(long, default_value = "elicit")]
    pub world: World,
    /// The toy model (default: the world's committed model, models/toy-qwen2 or
    /// models/toy-qwen2-elicit).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A reduced run for smoke tests: a few steps, small groups, few problems.
    #[arg(long)]
    pub quick: bool,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Prompts per step.
    #[arg(long)]
    pub prompts_per_step: Option<usize>,
    /// Completions per prompt (the group).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// KL weight β.
    #[arg(long)]
    pub beta: Option<f64>,
    /// Sampling temperature of the training completions.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Held-out problems of the evaluation.
    #[arg(long)]
    pub eval_problems: Option<usize>,
    /// Samples per problem in the evaluation.
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Seed of the training problems, the adapter, the order and the sampling (the held-out
    /// problems are the same for every seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs the command.
pub fn run(args: ToyTinaArgs) -> anyhow::Result<()> {
    let mut cfg = ToyTinaConfig {
        out: args.out.clone(),
        world: args.world,
        model: args.model.clone().unwrap_or_else(|| args.world.model_dir()),
        seed: args.seed,
        ..ToyTinaConfig::default()
    };
    let mut eval = ToyEvalConfig { seed: args.seed, ..ToyEvalConfig::default() };
    if args.quick {
        cfg = ToyTinaConfig { train_problems: 64, steps: 3, prompts_per_step: 2, group_size: 4, save_every: 2, ..cfg };
        eval = ToyEvalConfig { problems: 8, samples: 2, max_new_tokens: 64, ..eval };
    }
    cfg.steps = args.steps.unwrap_or(cfg.steps);
    cfg.prompts_per_step = args.prompts_per_step.unwrap_or(cfg.prompts_per_step);
    cfg.group_size = args.group_size.unwrap_or(cfg.group_size);
    cfg.lr = args.lr.unwrap_or(cfg.lr);
    cfg.beta = args.beta.unwrap_or(cfg.beta);
    cfg.temperature = args.temperature.unwrap_or(cfg.temperature);
    eval.problems = args.eval_problems.unwrap_or(eval.problems);
    eval.samples = args.eval_samples.unwrap_or(eval.samples);
    let spec = args.device.device;
    with_backend!(spec, |B, device| { toy_tina::<B>(&cfg, &eval, &device) })
}

fn toy_tina<B: Backend>(cfg: &ToyTinaConfig, eval: &ToyEvalConfig, device: &B::Device) -> anyhow::Result<()> {
    let mut progress = Reporter::new();
    let mut eval_progress = Reporter::new();
    let report = run_toy_tina::<B>(
        cfg,
        eval,
        device,
        &mut |m| {
            let get = |k: &str| m.objective.get(k).copied().unwrap_or(f64::NAN);
            progress.update(
                "grpo",
                m.step,
                m.total,
                &format!(
                    "reward {:.3} kl {:.4} len {:.1} loss {:.4}",
                    get("reward"),
                    get("kl"),
                    get("completion_length"),
                    m.loss
                ),
            );
            true
        },
        &mut |name, p| {
            eval_progress.update(
                &format!("eval {name}"),
                p.done as u64,
                p.total as u64,
                &format!("{} right", p.correct),
            )
        },
    )?;
    drop(progress);
    drop(eval_progress);
    println!("{}", toy_tina_markdown(&report));
    eprintln!("report: {}", cfg.out.join("report.md").display());
    Ok(())
}
