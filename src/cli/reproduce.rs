//! `resa reproduce NAME|all`: run one of the paper's experiments (`configs/NAME.toml`) end
//! to end, or list them, or print their plan; `--tiny` runs any of them on the toy model.

use std::path::PathBuf;

use anyhow::bail;
use burn::tensor::backend::Backend;
use resa::device::{ComputeArgs, MemoryArgs};
use resa::eval::TaskSources;
use resa::eval::vllm::{EngineKind, EngineOptions, VllmOptions};
use resa::experiments::{
    Experiment, RunEvent, RunOptions, TinyAssets, check_engine, describe, list, list_json, load_experiments, plan, run,
};
use resa::pipeline::PipelineEvent;
use resa::toy::paper::{ToyPaperConfig, ToyPaperEvent, run_toy_paper};
use resa::toy::world::World;
use resa::with_backend;

/// Arguments of `resa reproduce`.
#[derive(Debug, clap::Args)]
pub struct ReproduceArgs {
    /// Experiment name (`--list` shows them), or `all`.
    pub name: Option<String>,
    /// List the experiments with their paper numbers.
    #[arg(long)]
    pub list: bool,
    /// With `--list`: one JSON object per experiment (name, table, paper_avg, paper_step,
    /// source, target, trigger, elicitation, sae_mode, hookpoint, …); stable.
    #[arg(long, requires = "list")]
    pub json: bool,
    /// With `--dry-run`: Stage II GPU-seconds per optimizer step for the estimate (default:
    /// the paper's, about 20 minutes on 2 GPUs for 2,896 steps).
    #[arg(long)]
    pub gpu_seconds_per_step: Option<f64>,
    /// With `--dry-run`: GPU-hours of one evaluation of the benchmarks, to include
    /// evaluation in the estimate (it depends on the engine and the completions' length).
    #[arg(long)]
    pub eval_gpu_hours: Option<f64>,
    /// Print the stages and their configurations; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run on the built-in toy model with toy data and shrunken steps (CPU, seconds).
    #[arg(long)]
    pub tiny: bool,
    /// Folder of experiment files.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Folder of run folders (default `runs`, with --tiny `runs/tiny`).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// The toy model used by --tiny (default: models/toy-qwen2) and by toy-paper (default:
    /// its world's).
    #[arg(long)]
    pub toy_model: Option<PathBuf>,
    /// Folder of benchmark JSONL files (`aime24.jsonl`, …). Default: $RESA_EVAL_DIR.
    #[arg(long, env = "RESA_EVAL_DIR")]
    pub eval_dir: Option<PathBuf>,
    /// Your copy of GPQA Diamond (gpqa_diamond.csv); without it GPQA is left out.
    #[arg(long)]
    pub gpqa: Option<PathBuf>,
    /// Read math sets missing from --eval-dir from the hub (a build with the `hub` feature).
    #[cfg(feature = "hub")]
    #[arg(long)]
    pub hub: bool,
    /// The evaluation engine, for every experiment (default: each one's `[eval] engine`):
    /// local, vllm (started here for each evaluation) or endpoint (your server at --endpoint).
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// The vllm program.
    #[arg(long, default_value = "vllm")]
    pub vllm: PathBuf,
    /// An argument appended to `vllm serve` (repeatable): `--vllm-arg=--tensor-parallel-size --vllm-arg=2`.
    #[arg(long = "vllm-arg", allow_hyphen_values = true)]
    pub vllm_args: Vec<String>,
    /// vLLM's port (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub vllm_port: u16,
    /// vLLM's --max-model-len (default: the token budget + 4096).
    #[arg(long)]
    pub vllm_max_model_len: Option<usize>,
    /// vLLM's --dtype.
    #[arg(long, default_value = "bfloat16")]
    pub vllm_dtype: String,
    /// Seconds to wait for vLLM to answer.
    #[arg(long, default_value_t = 1800.0)]
    pub vllm_startup_timeout: f64,
    /// The OpenAI client (--endpoint is used by --engine endpoint).
    #[command(flatten)]
    pub client: super::eval::ClientArgs,
    /// The memory check of each Stage II step (before any stage of an experiment runs).
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// The toy paper's settings (last: their help heading is the last one).
    #[command(flatten)]
    pub toy_paper: ToyPaperArgs,
}

/// The flags of `resa reproduce toy-paper` (refused with any other experiment).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "toy-paper")]
pub struct ToyPaperArgs {
    /// The reduced run (every table, two seeds, few steps and problems; CI).
    #[arg(long)]
    pub quick: bool,
    /// The toy world (`elicit`, the default, or `arith`, the demo's) and
    /// with it the toy model (models/toy-qwen2-elicit or models/toy-qwen2).
    #[arg(long)]
    pub world: Option<World>,
    /// Seeds 0 … N−1 (each reruns everything downstream of the base
    /// model; default 3, with --quick 2).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Seeds run at once (threads; default: all of them).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Its output folder (default `runs/toy-paper`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ToyPaperArgs {
    /// Whether any of these flags was given.
    fn given(&self) -> bool {
        self.quick || self.out.is_some() || self.world.is_some() || self.seeds.is_some() || self.jobs.is_some()
    }

    /// The toy paper's configuration these flags (and `--toy-model`) make.
    fn config(&self, toy_model: Option<&PathBuf>) -> ToyPaperConfig {
        let mut cfg = ToyPaperConfig::for_world(self.world.unwrap_or(World::Elicit));
        if let Some(model) = toy_model {
            cfg.model = model.clone();
        }
        if self.quick {
            cfg = cfg.quick();
        }
        if let Some(out) = &self.out {
            cfg.out = out.clone();
        }
        if let Some(n) = self.seeds {
            cfg.seeds = n;
            cfg.jobs = n;
        }
        if let Some(n) = self.jobs {
            cfg.jobs = n;
        }
        cfg
    }
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// This project's generator.
    Local,
    /// vLLM, started here.
    Vllm,
    /// Your OpenAI-compatible server.
    Endpoint,
}

/// Runs the command.
pub fn run_command(args: ReproduceArgs) -> anyhow::Result<()> {
    if args.name.as_deref() == Some(TOY_PAPER) && !args.list {
        let cfg = args.toy_paper.config(args.toy_model.as_ref());
        let spec = args.compute.device;
        return with_backend!(spec, |B, device| { toy_paper::<B>(&cfg, &device) });
    }
    if args.toy_paper.given() {
        bail!("--quick, --out, --world, --seeds and --jobs belong to `resa reproduce toy-paper`");
    }
    let experiments = load_experiments(&args.configs)?;
    if args.list || args.name.is_none() {
        if args.json {
            print!("{}", list_json(&experiments)?);
            return Ok(());
        }
        print!("{}", list(&experiments));
        println!(
            "\n{TOY_PAPER}: the paper's claims (Tables 3, 4, 6) on the built-in toy model with an RL-trained toy source \
             over seeds (CPU; `resa reproduce {TOY_PAPER} [--world elicit|arith] [--seeds N] [--quick] [--out DIR]`); \
             one pass of the method on the toy model, minutes: `resa demo`"
        );
        return Ok(());
    }
    let name = args.name.clone().unwrap_or_default();
    let chosen: Vec<&Experiment> = if name == "all" {
        experiments.iter().collect()
    } else {
        match experiments.iter().find(|e| e.name == name) {
            Some(e) => vec![e],
            None => bail!(
                "no experiment `{name}` in {} (known: {})",
                args.configs.display(),
                experiments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { reproduce::<B>(&args, &chosen, &device) })
}

/// The toy paper's name on the command line (not a file of configs/: it composes its runs).
const TOY_PAPER: &str = "toy-paper";

fn toy_paper<B: Backend>(cfg: &ToyPaperConfig, device: &B::Device) -> anyhow::Result<()> {
    use super::progress::Reporter;
    // One reporter per seed (the seeds run at once), their bars drawn together.
    let group = indicatif::MultiProgress::new();
    let reporters = std::sync::Mutex::new(std::collections::BTreeMap::<Option<u64>, Reporter>::new());
    let on_event = |seed: Option<u64>, e: ToyPaperEvent<'_>| {
        let Ok(mut reporters) = reporters.lock() else { return };
        let progress = reporters.entry(seed).or_insert_with(|| Reporter::in_group(&group));
        let tag = seed.map_or(String::new(), |s| format!("[seed {s}] "));
        match e {
            ToyPaperEvent::Begin(part) => {
                progress.finish();
                progress.message(&format!("== {tag}{part}"));
            }
            ToyPaperEvent::Rl(m) => {
                let reward = m.objective.get("reward").copied().unwrap_or(f64::NAN);
                progress.update(&format!("  {tag}grpo    "), m.step, m.total, &format!("reward {reward:.3}"));
            }
            ToyPaperEvent::Sibling(m) => {
                progress.update(&format!("  {tag}sibling "), m.step, m.total, &format!("loss {:.4}", m.loss));
            }
            ToyPaperEvent::Pipeline(PipelineEvent::Stage1 { step, total, fvu }) => {
                progress.update(&format!("  {tag}stage I "), step, total, &format!("fvu {fvu:.4}"));
            }
            ToyPaperEvent::Pipeline(PipelineEvent::Stage2(m)) => {
                progress.update(&format!("  {tag}stage II"), m.step, m.total, &format!("loss {:.4}", m.loss));
            }
            ToyPaperEvent::Pipeline(PipelineEvent::Skipped(stage)) => {
                progress.message(&format!("  {tag}{stage}: up to date, skipped"));
            }
            ToyPaperEvent::Eval(p) => {
                progress.update(
                    &format!("  {tag}eval    "),
                    p.done as u64,
                    p.total as u64,
                    &format!("{} right", p.correct),
                );
            }
        }
    };
    let report = run_toy_paper::<B>(cfg, device, &on_event)?;
    drop(reporters);
    println!("{}", std::fs::read_to_string(cfg.out.join("report.md"))?);
    let held = report.summary.iter().filter(|c| c.holds).count();
    eprintln!(
        "{held} of {} claims hold at toy scale (in a majority of {} seeds); report: {}",
        report.summary.len(),
        cfg.seeds,
        cfg.out.join("report.md").display()
    );
    Ok(())
}

fn reproduce<B: Backend>(args: &ReproduceArgs, chosen: &[&Experiment], device: &B::Device) -> anyhow::Result<()> {
    let runs = args.runs.clone().unwrap_or_else(|| PathBuf::from(if args.tiny { "runs/tiny" } else { "runs" }));
    let tiny = if args.tiny {
        let model = args.toy_model.clone().unwrap_or_else(resa::toy::model::default_dir);
        Some(TinyAssets::prepare::<B>(&model, &runs.join("_toy"), device)?)
    } else {
        None
    };
    #[allow(unused_mut)] // set only in hub builds
    let mut sources =
        TaskSources { eval_dir: args.eval_dir.clone(), gpqa_csv: args.gpqa.clone(), ..TaskSources::default() };
    #[cfg(feature = "hub")]
    {
        sources.hub = args.hub;
    }
    let engine = EngineOptions {
        kind: args.engine.map(|e| match e {
            EngineArg::Local => EngineKind::Local,
            EngineArg::Vllm => EngineKind::Vllm,
            EngineArg::Endpoint => EngineKind::Endpoint,
        }),
        vllm: VllmOptions {
            program: args.vllm.clone(),
            port: args.vllm_port,
            dtype: args.vllm_dtype.clone(),
            max_model_len: args.vllm_max_model_len,
            extra_args: args.vllm_args.clone(),
            startup_timeout_s: args.vllm_startup_timeout,
            ..VllmOptions::default()
        },
        client: args.client.openai(),
    };
    if !(args.vllm_startup_timeout.is_finite() && args.vllm_startup_timeout > 0.0) {
        bail!("--vllm-startup-timeout {}: must be a positive number of seconds", args.vllm_startup_timeout);
    }
    let memory_limit = args.memory.limit(args.compute.device).map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        dtype: args.compute.dtype,
        sources,
        tiny_eval: args.tiny.then_some((4, 24)),
        engine,
        memory_limit,
    };
    let rate = args.gpu_seconds_per_step.unwrap_or(resa::experiments::PAPER_STAGE2_GPU_SECONDS_PER_STEP);
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--gpu-seconds-per-step {rate}: must be a positive number of seconds");
    }
    if let Some(h) = args.eval_gpu_hours
        && !(h.is_finite() && h > 0.0)
    {
        bail!("--eval-gpu-hours {h}: must be a positive number of hours");
    }
    let (mut total_steps, mut total_hours, mut total_evals, mut unknown) = (0u64, 0.0f64, 0usize, Vec::new());
    for exp in chosen {
        let stages = plan::<B>(exp, &runs, tiny.as_ref(), device)?;
        check_engine(exp, &stages, &opts)?;
        if args.dry_run {
            println!("{}", describe(exp, &stages));
            println!("## evaluation engine: {}\n", opts.engine_of(exp));
            let b = resa::experiments::estimate(exp, &stages, rate, args.eval_gpu_hours);
            println!("## estimate: {}\n", b.line());
            match b.stage2_steps {
                Some(n) => total_steps += n,
                None => unknown.push(exp.name.as_str()),
            }
            total_hours += b.stage2_gpu_hours.unwrap_or(0.0) + b.eval_gpu_hours.unwrap_or(0.0);
            total_evals += b.evaluations;
            continue;
        }
        let mut progress = super::progress::Reporter::new();
        progress.message(&format!("== {} — {}", exp.name, exp.title));
        let rows = run::<B>(exp, &stages, &runs, device, &opts, &mut |e| match e {
            RunEvent::Step(i, n, what) => {
                progress.finish();
                progress.message(&format!("[{}/{n}] {what}", i + 1));
            }
            RunEvent::Pipeline(PipelineEvent::Skipped(stage)) => {
                progress.message(&format!("  {stage}: up to date, skipped"));
            }
            RunEvent::Pipeline(PipelineEvent::Stage1 { step, total, fvu }) => {
                progress.update("  stage I ", step, total, &format!("fvu {fvu:.4}"));
            }
            RunEvent::Pipeline(PipelineEvent::Stage2(m)) => {
                progress.update("  stage II", m.step, m.total, &format!("loss {:.4}", m.loss));
            }
            RunEvent::Message(m) => progress.message(m),
            RunEvent::Eval(p) => {
                progress.update(
                    &format!("  {}", p.bench),
                    p.done as u64,
                    p.total as u64,
                    &format!("{} right", p.correct),
                );
            }
        })?;
        drop(progress);
        for r in &rows {
            eprintln!("{}: average {:.2}%", r.label, r.report.average_pct);
        }
        let result = runs.join(&exp.name).join("result.md");
        println!("{}", std::fs::read_to_string(&result).unwrap_or_default());
    }
    if args.dry_run && chosen.len() > 1 {
        println!(
            "# total: Stage II {total_steps} steps, {total_evals} evaluations ≈ {total_hours:.1} GPU-hours{} \
             (Stage II at {rate:.3} GPU-s/step{}; Stage I not estimated{}). The paper: about $436 of GPU time in all.",
            if args.eval_gpu_hours.is_some() { " with evaluation" } else { " of Stage II" },
            if args.gpu_seconds_per_step.is_none() { ", the paper's rate" } else { "" },
            if unknown.is_empty() { String::new() } else { format!("; steps unknown for {}", unknown.join(", ")) },
        );
    }
    Ok(())
}
