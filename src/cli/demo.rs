//! `resa demo`: the whole SAE-Tuning pipeline on the built-in toy model, offline, on the
//! CPU (see `resa::toy::demo`).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::DeviceArgs;
use resa::pipeline::PipelineEvent;
use resa::toy::demo::{DemoConfig, DemoEvent, ToyStages, run_demo, table};
use resa::with_backend;

use super::progress::Reporter;

/// Arguments of `resa demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output folder (a rerun skips finished stages).
    #[arg(long, default_value = "resa-demo")]
    pub out: PathBuf,
    /// The toy model (default: the committed models/toy-qwen2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A reduced run for smoke tests: few steps, rows and problems.
    #[arg(long)]
    pub quick: bool,
    /// Stage I steps.
    #[arg(long)]
    pub stage1_steps: Option<u64>,
    /// Stage II (and baseline) steps.
    #[arg(long)]
    pub stage2_steps: Option<u64>,
    /// Test problems per model.
    #[arg(long)]
    pub test_problems: Option<usize>,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs the command.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut cfg = DemoConfig { out: args.out.clone(), ..DemoConfig::default() };
    if let Some(m) = &args.model {
        cfg.model = m.clone();
    }
    if args.quick {
        cfg = DemoConfig {
            train_rows: 200,
            test_problems: 10,
            stages: ToyStages { num_latents: 256, stage1_steps: 5, stage2_steps: 4, ..cfg.stages },
            max_new_tokens: 48,
            ..cfg
        };
    }
    cfg.stages.stage1_steps = args.stage1_steps.unwrap_or(cfg.stages.stage1_steps);
    cfg.stages.stage2_steps = args.stage2_steps.unwrap_or(cfg.stages.stage2_steps);
    cfg.test_problems = args.test_problems.unwrap_or(cfg.test_problems);
    let spec = args.device.device;
    with_backend!(spec, |B, device| { demo::<B>(&cfg, &device) })
}

fn demo<B: Backend>(cfg: &DemoConfig, device: &B::Device) -> anyhow::Result<()> {
    let mut progress = Reporter::new();
    let report = run_demo::<B>(cfg, device, &mut |e| match e {
        DemoEvent::Begin(part) => {
            progress.finish();
            progress.message(&format!("== {part}"));
        }
        DemoEvent::Pipeline(_, PipelineEvent::Stage1 { step, total, fvu }) => {
            progress.update("  stage I ", step, total, &format!("fvu {fvu:.4}"));
        }
        DemoEvent::Pipeline(name, PipelineEvent::Stage2(m)) => {
            let what = if name == "CoT-free SFT" { "cross-entropy" } else { "KL" };
            progress.update(
                "  stage II",
                m.step,
                m.total,
                &format!("{what} {:.4} {:.0} tok/s", m.loss, m.tokens_per_second),
            );
        }
        DemoEvent::Pipeline(_, PipelineEvent::Skipped(stage)) => {
            progress.message(&format!("  {stage}: up to date, skipped"));
        }
        DemoEvent::Eval(_, p) => {
            progress.update("  eval    ", p.done as u64, p.total as u64, &format!("{} right", p.correct));
        }
    })?;
    drop(progress);
    println!("{}", table(&report));
    eprintln!("report: {}", cfg.out.join("report.md").display());
    Ok(())
}
