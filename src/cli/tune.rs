//! `resa tune --config run.toml`: the whole SAE-Tuning pipeline (Stage I, Stage II, adapter,
//! optionally the merged model); see `resa_pipeline::pipeline` for the configuration.

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa::device::{ComputeArgs, MemoryArgs};
use resa::pipeline::pipeline::ObjectiveKind;
use resa::pipeline::{Pipeline, PipelineEvent, PipelineFile, run_pipeline};
use resa::tune::Nodes;
use resa::with_backend;

use super::progress::Reporter;

/// Arguments of `resa tune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// Pipeline configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Override the run folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override Stage I's step limit.
    #[arg(long)]
    pub stage1_max_steps: Option<u64>,
    /// Override Stage II's step limit.
    #[arg(long)]
    pub stage2_max_steps: Option<u64>,
    /// Override Stage II's objective: `sae-tuning` or `sft` (the CoT-free SFT baseline).
    #[arg(long, value_parser = ["sae-tuning", "sft"])]
    pub objective: Option<String>,
    /// Also write the merged model.
    #[arg(long)]
    pub merge: bool,
    /// Mirror every stage's metrics into this TensorBoard log folder while the run goes
    /// (`tensorboard --logdir DIR`); overrides `tensorboard` in the configuration.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Recompute the student's layers in Stage II's backward (one layer's activations held
    /// instead of every student layer's; the same gradients); sets `stage2.recompute`.
    #[arg(long)]
    pub recompute: bool,
    /// Data-parallel replicas for Stage II, one per device from `--device` on
    /// (`--device cuda:0 --data-parallel 4` uses cuda:0…cuda:3); overrides `stage2.data_parallel`.
    #[arg(long)]
    pub data_parallel: Option<usize>,
    /// Stage II on several machines: the number of processes (nodes), each started with the
    /// same command and data, differing in `--node-rank` and `--node-address`; gradients are
    /// summed over all nodes' replicas with burn-collective.
    #[arg(long, requires_all = ["node_rank", "orchestrator", "node_address"])]
    pub nodes: Option<u32>,
    /// This node's index, 0 … nodes − 1.
    #[arg(long, requires = "nodes")]
    pub node_rank: Option<u32>,
    /// The orchestrator's address, `ws://HOST:PORT` (start it once with
    /// `resa collective-orchestrator --port PORT`).
    #[arg(long, requires = "nodes")]
    pub orchestrator: Option<String>,
    /// Where the other nodes reach this one, `ws://THIS_HOST:PORT` (the port is opened here).
    #[arg(long, requires = "nodes")]
    pub node_address: Option<String>,
    /// Seconds to wait for the orchestrator and every node at the start, and for the other
    /// nodes in each step (a node silent this long is taken as lost).
    #[arg(long, default_value_t = 600, requires = "nodes")]
    pub node_timeout: u64,
    /// The memory check of one Stage II step.
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    let mut cfg = PipelineFile::from_toml_file(&args.config)?;
    if let Some(out) = &args.out {
        cfg.out = out.clone();
    }
    if args.stage1_max_steps.is_some() {
        cfg.sae.max_steps = args.stage1_max_steps;
    }
    if args.stage2_max_steps.is_some() {
        cfg.stage2.max_steps = args.stage2_max_steps;
    }
    if let Some(o) = &args.objective {
        cfg.stage2.objective = if o == "sft" { ObjectiveKind::Sft } else { ObjectiveKind::SaeTuning };
    }
    cfg.stage2.merge |= args.merge;
    if let Some(dir) = args.tensorboard {
        cfg.tensorboard = Some(dir);
    }
    cfg.stage2.recompute |= args.recompute;
    if let Some(n) = args.data_parallel {
        cfg.stage2.data_parallel = n;
    }
    // Everything a run needs is checked before it starts (the overrides included).
    let file = args.config.display().to_string();
    let limit = args.memory.limit(args.compute.device).map_err(anyhow::Error::msg)?;
    let nodes = match (args.nodes, args.node_rank, args.orchestrator, args.node_address) {
        (Some(count), Some(rank), Some(orchestrator), Some(address)) => {
            Some(Nodes { count, rank, orchestrator, address, timeout_secs: args.node_timeout })
        }
        _ => None,
    };
    let pipeline = Pipeline::new(cfg, &file)?.with_memory_limit(limit).with_nodes(nodes)?;
    pipeline.validate_models(&file)?;
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { tune::<B>(&pipeline, &device, args.compute.dtype) })
}

fn tune<B: Backend>(pipeline: &Pipeline, device: &B::Device, dtype: DType) -> anyhow::Result<()> {
    let mut progress = Reporter::new();
    let report = run_pipeline::<Autodiff<B>>(pipeline, device, dtype, &mut |e| match e {
        PipelineEvent::Skipped(stage) => progress.message(&format!("{stage}: output up to date, skipped")),
        PipelineEvent::Stage1 { step, total, fvu } => {
            progress.update("stage I ", step, total, &format!("fvu {fvu:.4}"));
        }
        PipelineEvent::Stage2(m) => progress.update(
            "stage II",
            m.step,
            m.total,
            &format!("loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s", m.loss, m.lr, m.grad_norm, m.tokens_per_second),
        ),
    })?;
    drop(progress);
    eprintln!("SAE: {}{}", report.sae.display(), if report.stage1_ran { " (trained)" } else { "" });
    if let Some((a, b)) = report.stage2_loss {
        eprintln!("stage II loss {a:.4} → {b:.4}");
    }
    eprintln!("adapter: {}", report.adapter.display());
    if let Some(m) = &report.merged {
        eprintln!("merged model: {}", m.display());
    }
    Ok(())
}
