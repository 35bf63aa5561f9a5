//! Command-line definitions and dispatch.

pub mod bench;
pub mod collective;
pub mod debug;
pub mod demo;
pub mod eval;
pub mod features;
pub mod forward;
pub mod generate;
pub mod grade;
pub mod merge;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod sae;
pub mod serve;
pub mod tensorboard;
pub mod toy_model;
pub mod toy_tina;
pub mod train_sae;
pub mod tune;

use clap::{Parser, Subcommand};

/// SAE-Tuning (Resa) in Rust.
#[derive(Debug, Parser)]
#[command(name = "resa", version, about)]
pub struct Cli {
    /// No progress bars or lines and no stage messages (results and errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Time the fixed benchmark workloads (`cargo xtask bench`).
    Bench(bench::BenchArgs),
    /// The whole pipeline on the built-in toy model, offline, in minutes (Table 3 in miniature).
    Demo(demo::DemoArgs),
    /// Run a model on token ids; write logits and hookpoint activations (safetensors).
    Forward(forward::ForwardArgs),
    /// Generate a continuation of a prompt.
    Generate(generate::GenerateArgs),
    /// Zero-shot Pass@1 on the paper's benchmarks (resumable; Markdown and JSON report).
    Eval(Box<eval::EvalArgs>),
    /// Serve a model (and adapter) over an OpenAI-compatible HTTP API (`/v1/completions`, …).
    Serve(Box<serve::ServeArgs>),
    /// Grade completions against gold answers (math equivalence; GPQA letters).
    Grade(grade::GradeArgs),
    /// Merge a PEFT LoRA adapter into a model and write a Hugging Face checkpoint.
    Merge(merge::MergeArgs),
    /// Stage I: train sparse autoencoders on a model's hookpoint activations.
    TrainSae(Box<train_sae::TrainSaeArgs>),
    /// The whole pipeline: Stage I, Stage II, adapter (and merged model) from one config.
    Tune(Box<tune::TuneArgs>),
    /// The paper's experiments from `configs/` (`--list`, `--dry-run`, `--tiny`).
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// Reasoning features per layer, their Gaussian mixture over layers, suggested hookpoints.
    Features(Box<features::FeaturesArgs>),
    /// Draw the training curves of every run under a folder (SVG and PNG beside each metrics.jsonl).
    Plot(plot::PlotArgs),
    /// Write the training curves of every run under a folder as TensorBoard event files.
    Tensorboard(tensorboard::TensorboardArgs),
    /// Train the built-in toy reasoning model from scratch (`cargo xtask toy-model`).
    ToyModel(toy_model::ToyModelArgs),
    /// LoRA-GRPO on the toy model (a toy Tina), evaluated against the base, paired.
    ToyTina(Box<toy_tina::ToyTinaArgs>),
    /// The meeting point of a multi-node Stage II run (burn-collective's global orchestrator).
    CollectiveOrchestrator(collective::OrchestratorArgs),
    /// Diagnostics for comparing with the reference implementations (`resa debug stage2-step`).
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Sparse-coder utilities (`resa sae encode`).
    #[command(subcommand)]
    Sae(sae::SaeCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    progress::set_quiet(cli.quiet);
    match cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Grade(args) => grade::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Eval(args) => eval::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::CollectiveOrchestrator(args) => collective::run(args),
        Command::Features(args) => features::run(*args),
        Command::Plot(args) => plot::run(args),
        Command::Tensorboard(args) => tensorboard::run(args),
        Command::ToyModel(args) => toy_model::run(args),
        Command::ToyTina(args) => toy_tina::run(*args),
        Command::TrainSae(args) => train_sae::run(*args),
        Command::Sae(cmd) => sae::run(cmd),
        Command::Debug(cmd) => debug::run(cmd),
        Command::Tune(args) => tune::run(*args),
        Command::Reproduce(args) => reproduce::run_command(*args),
    }
}
