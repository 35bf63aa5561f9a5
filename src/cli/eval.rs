//! `resa eval`: zero-shot Pass@1 on the paper's benchmarks (or the toy world's test split).
//!
//! Writes `eval_config.json`, `completions.jsonl` (resumable), `report.json` and
//! `report.md` into `--out`, and prints the Markdown table.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::eval::{EvalConfig, Progress, TASKS, TaskSources};
use resa::pipeline::pipeline::ModelRef;
use resa::pipeline::{Evaluation, load_tasks};
use resa::qwen2::Sampling;
use resa::with_backend;

/// Arguments of `resa eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// PEFT LoRA adapter folder to attach before evaluating.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Benchmarks, comma-separated: aime24, aime25, amc23, math500, minerva, gpqa_diamond,
    /// toy. Default: the five math sets, and GPQA Diamond when --gpqa is given.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Folder of benchmark JSONL files (`aime24.jsonl`, …, fields id/problem/answer), such
    /// as `../shared/data/eval`. Default: $RESA_EVAL_DIR.
    #[arg(long, env = "RESA_EVAL_DIR")]
    pub eval_dir: Option<PathBuf>,
    /// Read math sets missing from --eval-dir from the hub (a build with the `hub` feature).
    #[cfg(feature = "hub")]
    #[arg(long)]
    pub hub: bool,
    /// Your copy of GPQA Diamond (gpqa_diamond.csv of Idavidrein/gpqa; gated, never shipped).
    #[arg(long)]
    pub gpqa: Option<PathBuf>,
    /// Seed of GPQA's per-question choice shuffle.
    #[arg(long, default_value_t = 0)]
    pub gpqa_seed: u64,
    /// Output folder (a rerun into it resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// Evaluate only the first N problems of each benchmark.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Samples per problem.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Base seed of the samplers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Greedy decoding instead of sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Upper bound on new tokens per completion.
    #[arg(long, default_value_t = 32768)]
    pub max_new_tokens: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Feed the raw prompt instead of rendering the model's chat template.
    #[arg(long)]
    pub no_chat: bool,
    /// A system message before each question.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { run_on::<B>(&args, &device) })
}

fn run_on<B: Backend>(args: &EvalArgs, device: &B::Device) -> anyhow::Result<()> {
    let names: Vec<String> = if args.tasks.is_empty() {
        TASKS.iter().filter(|t| t.name != "gpqa_diamond" || args.gpqa.is_some()).map(|t| t.name.to_string()).collect()
    } else {
        args.tasks.clone()
    };
    #[allow(unused_mut, clippy::needless_update)] // the hub field exists in hub builds only
    let mut sources = TaskSources {
        eval_dir: args.eval_dir.clone(),
        gpqa_csv: args.gpqa.clone(),
        gpqa_seed: args.gpqa_seed,
        ..TaskSources::default()
    };
    #[cfg(feature = "hub")]
    {
        sources.hub = args.hub;
    }
    let tasks = load_tasks(&names, &sources, args.limit, false)?;
    let mut label = args.model.clone();
    let cfg = EvalConfig {
        sampling: if args.greedy {
            Sampling::Greedy
        } else {
            Sampling::Sample { temperature: args.temperature, top_p: args.top_p, top_k: args.top_k }
        },
        max_new_tokens: args.max_new_tokens,
        samples: args.samples,
        seed: args.seed,
        batch_size: args.batch_size,
        chat: !args.no_chat,
        system_prompt: args.system_prompt.clone(),
    };
    let mut evaluation = Evaluation::<B>::new(&ModelRef::new(&args.model), tasks, cfg, device, args.compute.dtype)?;
    if let Some(adapter) = &args.adapter {
        evaluation.with_adapter(adapter)?;
        label = format!("{label} + {}", adapter.display());
    }
    let mut progress = super::progress::Reporter::new();
    let report = evaluation.run(&args.out, &label, |p: &Progress<'_>| {
        let rate = if p.seconds > 0.0 { p.new_tokens as f64 / p.seconds } else { 0.0 };
        progress.update(
            &format!("{:<14}", p.bench),
            p.done as u64,
            p.total as u64,
            &format!("right {} {rate:.1} tok/s", p.correct),
        );
    })?;
    drop(progress);
    println!("{}", report.to_markdown());
    eprintln!("completions, report.json and report.md in {}", args.out.display());
    Ok(())
}
