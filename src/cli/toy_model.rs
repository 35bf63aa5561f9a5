//! `resa toy-model --out DIR`: trains the built-in toy reasoning model from scratch (what
//! `cargo xtask toy-model` runs to remake `models/toy-qwen2`).

use std::io::IsTerminal;
use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::DeviceSpec;
use resa::toy_model::{ToyModelConfig, train_toy_model};
use resa::tune::StepMetrics;
use resa::with_backend;

/// Arguments of `resa toy-model`.
#[derive(Debug, clap::Args)]
pub struct ToyModelArgs {
    /// Output folder (replaced atomically when training ends).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps (default: the committed model's).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Training problems (default: the committed model's).
    #[arg(long)]
    pub train_problems: Option<usize>,
    /// Held-out problems for the accuracy check.
    #[arg(long)]
    pub test_problems: Option<usize>,
    /// cpu, ndarray, wgpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Runs the command.
pub fn run(args: ToyModelArgs) -> anyhow::Result<()> {
    let mut cfg = ToyModelConfig::default();
    if let Some(s) = args.steps {
        cfg.train.steps = s;
    }
    if let Some(n) = args.train_problems {
        cfg.train_problems = n;
    }
    if let Some(n) = args.test_problems {
        cfg.test_problems = n;
    }
    let spec = args.device;
    with_backend!(spec, |B, device| { train::<B>(&cfg, &device, &args) })
}

fn train<B: Backend>(cfg: &ToyModelConfig, device: &B::Device, args: &ToyModelArgs) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let report = train_toy_model::<B>(cfg, device, &args.out, &mut |m: &StepMetrics| {
        if tty || m.step.is_multiple_of(50) || m.step == m.total {
            eprint!(
                "{}step {:>5}/{} loss {:.4} lr {:.2e} {:>7.0} tok/s{}",
                if tty { "\r" } else { "" },
                m.step,
                m.total,
                m.loss,
                m.lr,
                m.tokens_per_second,
                if tty && m.step != m.total { "" } else { "\n" }
            );
        }
        true
    })?;
    println!(
        "toy model: {} parameters, loss {:.4} → {:.4} in {:.0} s, held-out accuracy {:.1}% ({} problems, greedy) → {}",
        report.parameters,
        report.first_loss,
        report.last_loss,
        report.train_seconds,
        report.test_accuracy_pct,
        cfg.test_problems,
        args.out.display()
    );
    Ok(())
}
