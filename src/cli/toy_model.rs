//! `resa toy-model --out DIR`: trains the built-in toy reasoning model from scratch (what
//! `cargo xtask toy-model` runs to remake `models/toy-qwen2`).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::DeviceArgs;
use resa::toy::model::{ToyModelConfig, train_toy_model};
use resa::toy::world::World;
use resa::tune::StepMetrics;
use resa::with_backend;

/// Arguments of `resa toy-model`.
#[derive(Debug, clap::Args)]
pub struct ToyModelArgs {
    /// Output folder (replaced atomically when training ends).
    #[arg(long)]
    pub out: PathBuf,
    /// The toy world (`arith`: chain-of-thought solutions only; `elicit`: a mixture where a
    /// share of the solutions skip the reasoning).
    #[arg(long, default_value = "arith")]
    pub world: World,
    /// Optimizer steps (default: the committed model's).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Training problems (default: the committed model's).
    #[arg(long)]
    pub train_problems: Option<usize>,
    /// Held-out problems for the accuracy check.
    #[arg(long)]
    pub test_problems: Option<usize>,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs the command.
pub fn run(args: ToyModelArgs) -> anyhow::Result<()> {
    let mut cfg = ToyModelConfig::for_world(args.world);
    if let Some(s) = args.steps {
        cfg.train.steps = s;
    }
    if let Some(n) = args.train_problems {
        cfg.train_problems = n;
    }
    if let Some(n) = args.test_problems {
        cfg.test_problems = n;
    }
    let spec = args.device.device;
    with_backend!(spec, |B, device| { train::<B>(&cfg, &device, &args) })
}

fn train<B: Backend>(cfg: &ToyModelConfig, device: &B::Device, args: &ToyModelArgs) -> anyhow::Result<()> {
    let mut progress = super::progress::Reporter::new();
    let report = train_toy_model::<B>(cfg, device, &args.out, &mut |m: &StepMetrics| {
        progress.update(
            "train",
            m.step,
            m.total,
            &format!("loss {:.4} lr {:.2e} {:.0} tok/s", m.loss, m.lr, m.tokens_per_second),
        );
        true
    })?;
    drop(progress);
    println!(
        "toy model ({}): {} parameters, loss {:.4} → {:.4} in {:.0} s, held-out accuracy {:.1}% ({} problems, greedy) → {}",
        cfg.world,
        report.parameters,
        report.first_loss,
        report.last_loss,
        report.train_seconds,
        report.test_accuracy_pct,
        cfg.test_problems,
        args.out.display()
    );
    if let (Some(pass), Some(p)) = (report.sampled_pass_at_1_pct, report.sampled_profile) {
        let pct = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.1}%"));
        println!(
            "sampled (temperature 0.6, 4 samples): Pass@1 {pass:.1}%; {:.1}% of the completions reason, right {} when \
             they do, {} when they do not",
            p.reasoned_pct,
            pct(p.accuracy_reasoning_pct),
            pct(p.accuracy_direct_pct)
        );
    }
    Ok(())
}
