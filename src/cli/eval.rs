//! `resa eval`: zero-shot Pass@1 on the paper's benchmarks (or the toy world's test split).
//!
//! Writes `eval_config.json`, `completions.jsonl` (resumable), `report.json` and
//! `report.md` into `--out`, and prints the Markdown table.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::eval::RemoteEvaluation;
use resa::eval::{EvalConfig, OpenAiConfig, Progress, PromptFormat, TASKS, TaskSources};
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
    /// toy, toy-elicit. Default: the five math sets, and GPQA Diamond when --gpqa is given.
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
    /// Where and in which dtype to compute (the local engine).
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Where completions come from.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Which engine decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// This project's generator on --device (static batches of --batch-size).
    Local,
    /// An OpenAI-compatible server at --endpoint (vLLM, SGLang, TGI, `resa serve`); --model
    /// names the served model's folder, whose tokenizer renders and tokenises the prompts.
    Openai,
}

/// The engine arguments of `resa eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Where completions come from.
    #[arg(long, value_enum, default_value_t = EngineKind::Local)]
    pub engine: EngineKind,
    /// The OpenAI client.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The OpenAI-compatible client's arguments (`resa eval --engine openai`, `resa reproduce
/// --engine vllm|endpoint`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server's base URL with /v1, as OpenAI clients take it (--engine openai).
    #[arg(long, default_value = "http://127.0.0.1:8000/v1")]
    pub endpoint: String,
    /// The served model's name (default: the one model the server lists).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Environment variable holding the API key, sent as a bearer token when set.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 3600.0)]
    pub request_timeout: f64,
    /// Retries of a request the server did not answer (refused, timed out, HTTP 408/429/5xx).
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,
    /// Seconds before the first retry (doubled after each, at most 60).
    #[arg(long, default_value_t = 1.0)]
    pub retry_backoff: f64,
    /// Send prompts as token ids (identical tokens on every engine) or as text.
    #[arg(long, value_enum, default_value_t = PromptArg::Tokens)]
    pub prompt_format: PromptArg,
}

/// How prompts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptArg {
    /// Token ids.
    Tokens,
    /// Text, with add_special_tokens false.
    Text,
}

impl ClientArgs {
    /// The client settings.
    pub fn openai(&self) -> OpenAiConfig {
        OpenAiConfig {
            endpoint: self.endpoint.clone(),
            model: self.served_model.clone(),
            api_key_env: self.api_key_env.clone(),
            concurrency: self.concurrency,
            request_timeout_s: self.request_timeout,
            max_retries: self.max_retries,
            backoff_s: self.retry_backoff,
            prompt_format: match self.prompt_format {
                PromptArg::Tokens => PromptFormat::Tokens,
                PromptArg::Text => PromptFormat::Text,
            },
            ..OpenAiConfig::default()
        }
    }
}

/// Runs the command.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.engine.engine == EngineKind::Openai {
        return run_remote(&args);
    }
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { run_on::<B>(&args, &device) })
}

fn tasks_of(args: &EvalArgs) -> anyhow::Result<Vec<resa::eval::Task>> {
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
    }
    .with_task(resa::toy::world::World::Arith.test_task(0, 200))
    .with_task(resa::toy::world::World::Elicit.test_task(0, 200));
    #[cfg(feature = "hub")]
    {
        sources.hub = args.hub;
    }
    Ok(load_tasks(&names, &sources, args.limit, false)?)
}

fn eval_config(args: &EvalArgs) -> EvalConfig {
    EvalConfig {
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
    }
}

fn progress_line(progress: &mut super::progress::Reporter, p: &Progress<'_>) {
    let rate = if p.seconds > 0.0 { p.new_tokens as f64 / p.seconds } else { 0.0 };
    progress.update(
        &format!("{:<14}", p.bench),
        p.done as u64,
        p.total as u64,
        &format!("right {} {rate:.1} tok/s", p.correct),
    );
}

fn print_report(report: &resa::eval::Report, out: &std::path::Path) {
    println!("{}", report.to_markdown());
    eprintln!("completions, report.json and report.md in {}", out.display());
}

fn run_remote(args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(adapter) = &args.adapter {
        anyhow::bail!(
            "--adapter {} with --engine openai: the server applies adapters (serve it with `resa serve --adapter`, or \
             vLLM's --enable-lora --lora-modules NAME=DIR) and --served-model names it",
            adapter.display()
        );
    }
    let tasks = tasks_of(args)?;
    let evaluation = RemoteEvaluation::new(&args.model, tasks, eval_config(args), args.engine.client.openai())?;
    let label = format!("{} @ {}", args.model, args.engine.client.endpoint);
    let mut progress = super::progress::Reporter::new();
    let report = evaluation.run(&args.out, &label, |p: &Progress<'_>| progress_line(&mut progress, p))?;
    drop(progress);
    print_report(&report, &args.out);
    Ok(())
}

fn run_on<B: Backend>(args: &EvalArgs, device: &B::Device) -> anyhow::Result<()> {
    let tasks = tasks_of(args)?;
    let mut label = args.model.clone();
    let cfg = eval_config(args);
    let mut evaluation = Evaluation::<B>::new(&ModelRef::new(&args.model), tasks, cfg, device, args.compute.dtype)?;
    if let Some(adapter) = &args.adapter {
        evaluation.with_adapter(adapter)?;
        label = format!("{label} + {}", adapter.display());
    }
    let mut progress = super::progress::Reporter::new();
    let report = evaluation.run(&args.out, &label, |p: &Progress<'_>| progress_line(&mut progress, p))?;
    drop(progress);
    print_report(&report, &args.out);
    Ok(())
}
