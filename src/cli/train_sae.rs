//! `resa train-sae`: Stage I — train TopK SAEs on a source model's hookpoint activations.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use resa::data::{ReadOptions, Template};
use resa::device::ComputeArgs;
use resa::pipeline::data::{ChunkSource, chunk_dataset};
use resa::qwen2::{Hookpoint, Qwen2ForCausalLM, hub};
use resa::sae::{OptimizerKind, Progress, SaeInit, Stage1Options, TrainConfig, train_saes_with};
use resa::with_backend;

/// Arguments of `resa train-sae`.
#[derive(Debug, clap::Args)]
pub struct TrainSaeArgs {
    /// Source model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// Trigger data: a JSONL / JSON / Parquet file or folder of them, a dataset of the
    /// paper by name (`still`, `deepscaler`, `open-s1`, `ii-thought`, `openr1-math`, `limr`,
    /// `open-rs`) or a hub dataset id (these two with the `hub` feature); question–answer
    /// rows rendered with `--template`.
    #[arg(long, required_unless_present = "token_ids", conflicts_with = "token_ids")]
    pub data: Option<String>,
    /// Split of a folder or hub dataset.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Pre-tokenised chunks instead of `--data`: a JSON file `[[id, ...], ...]`, rows of equal length.
    #[arg(long)]
    pub token_ids: Option<PathBuf>,
    /// Template for `--data`: `reference` (default), `paper`, or a string with `{problem}` and `{answer}`.
    #[arg(long, default_value = "reference")]
    pub template: Template,
    /// Skip rows with a missing or empty field instead of failing (they are counted either way).
    #[arg(long)]
    pub lenient: bool,
    /// Tokens per chunk (BOS included).
    #[arg(long, default_value_t = 2048)]
    pub ctx_len: usize,
    /// Shuffle the chunks with this seed (default: data order).
    #[arg(long)]
    pub shuffle_seed: Option<u64>,
    /// Hookpoint (`layers.N` or `layers.N.mlp`); repeatable, one SAE each, one forward for all.
    #[arg(long = "hookpoint", required = true)]
    pub hookpoints: Vec<Hookpoint>,
    /// Output folder: one sparsify SAE folder per hookpoint, training state, metrics.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// `scratch` (fresh SAEs) or `finetune` (start from `--init`, keep its b_dec).
    #[arg(long, value_enum, default_value_t = ModeArg::Scratch)]
    pub mode: ModeArg,
    /// SAE folder(s) to fine-tune: a folder of hookpoint folders (or one SAE folder for one hookpoint).
    #[arg(long, required_if_eq("mode", "finetune"))]
    pub init: Option<PathBuf>,
    /// Number of latents (default 65536, as the reference; with --expansion-factor, that
    /// multiple of the hidden size).
    #[arg(long, conflicts_with = "expansion_factor")]
    pub num_latents: Option<usize>,
    /// Latents as a multiple of the model's hidden size.
    #[arg(long)]
    pub expansion_factor: Option<usize>,
    /// Active latents per token.
    #[arg(long, default_value_t = SaeInit::DEFAULT_K)]
    pub k: usize,
    /// Initialisation seed (scratch).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Chunks per step.
    #[arg(long, default_value_t = Stage1Options::default().batch_size)]
    pub batch_size: usize,
    /// `signum` (sign-SGD in schedule-free averaging, the default) or `adam`.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Signum)]
    pub optimizer: OptimizerArg,
    /// Learning rate (default: 5e-3/√(L/2¹⁴) for Signum, 2e-4/√(L/2¹⁴) for Adam).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam warm-up steps.
    #[arg(long, default_value_t = TrainConfig::default().lr_warmup_steps)]
    pub lr_warmup_steps: u64,
    /// Weight of the AuxK loss (0: off, as the reference).
    #[arg(long, default_value_t = TrainConfig::default().auxk_alpha)]
    pub auxk_alpha: f32,
    /// Tokens without firing after which a latent is dead.
    #[arg(long, default_value_t = TrainConfig::default().dead_feature_threshold)]
    pub dead_feature_threshold: u64,
    /// Tokens processed at once inside a step (memory bound; the result does not change).
    #[arg(long)]
    pub micro_batch_tokens: Option<usize>,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = Stage1Options::default().save_every)]
    pub save_every: u64,
    /// Stop after N steps (default: one epoch).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Continue from the checkpoint in `--out`.
    #[arg(long)]
    pub resume: bool,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: TrainSaeArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { train::<B>(&args, &device) })
}

fn load_chunks(args: &TrainSaeArgs, dir: &std::path::Path) -> anyhow::Result<Vec<Vec<u32>>> {
    if let Some(path) = &args.token_ids {
        let (ids, [rows, cols]) = super::forward::read_ids(path)?;
        if ids.iter().any(|&t| t > i64::from(u32::MAX)) {
            bail!("{}: token id out of range", path.display());
        }
        return Ok(ids.chunks(cols).take(rows).map(|r| r.iter().map(|&t| t as u32).collect()).collect());
    }
    let data = args.data.as_ref().context("--data or --token-ids is required")?;
    let source = ChunkSource {
        spec: data,
        split: &args.split,
        template: &args.template,
        ctx_len: args.ctx_len,
        max_rows: None,
        read: if args.lenient { ReadOptions::default() } else { ReadOptions::strict() },
        shuffle_seed: args.shuffle_seed,
        ctx_len_name: "--ctx-len",
    };
    let chunks = chunk_dataset(&source, dir)?;
    let st = &chunks.stats;
    eprintln!(
        "{data}: {} rows → {} tokens → {} chunks of {} tokens",
        st.rows, st.stream_tokens, st.chunks, args.ctx_len
    );
    Ok(chunks.chunks)
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Fresh SAEs.
    Scratch,
    /// Start from `--init`.
    Finetune,
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    /// sign-SGD in schedule-free averaging (sparsify's default).
    Signum,
    /// Adam with warm-up.
    Adam,
}

fn train<B: Backend>(args: &TrainSaeArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, args.compute.dtype)?;
    let chunks = load_chunks(args, &dir)?;
    let init = match args.mode {
        ModeArg::Finetune => SaeInit::Finetune(args.init.clone().context("--mode finetune needs --init")?),
        ModeArg::Scratch => SaeInit::Scratch {
            num_latents: match (args.num_latents, args.expansion_factor) {
                (Some(n), _) => Some(n),
                (None, Some(_)) => None,
                (None, None) => Some(SaeInit::DEFAULT_LATENTS),
            },
            expansion_factor: args.expansion_factor.unwrap_or(SaeInit::DEFAULT_EXPANSION_FACTOR),
            k: args.k,
            seed: args.seed,
        },
    };
    let options = Stage1Options {
        hookpoints: args.hookpoints.clone(),
        init,
        train: TrainConfig {
            optimizer: match args.optimizer {
                OptimizerArg::Signum => OptimizerKind::Signum,
                OptimizerArg::Adam => OptimizerKind::Adam,
            },
            lr: args.lr,
            lr_warmup_steps: args.lr_warmup_steps,
            auxk_alpha: args.auxk_alpha,
            dead_feature_threshold: args.dead_feature_threshold,
            micro_batch_tokens: args.micro_batch_tokens,
            ..TrainConfig::default()
        },
        batch_size: args.batch_size,
        save_every: args.save_every,
        max_steps: args.max_steps,
        out: args.out.clone(),
        resume: args.resume,
    };
    let mut progress = super::progress::Reporter::new();
    let mut draw = |p: Progress<'_>| {
        let n = p.metrics.len().max(1) as f32;
        let fvu = p.metrics.iter().map(|(_, m)| m.fvu).sum::<f32>() / n;
        let dead = p.metrics.iter().map(|(_, m)| m.dead_fraction).sum::<f32>() / n;
        progress.update(
            "stage I",
            p.step,
            p.total,
            &format!("fvu {fvu:.4} dead {:.1}% {:.0} tok/s", dead * 100.0, p.tokens_per_second),
        );
    };
    let report = train_saes_with::<Autodiff<B>>(&model, &chunks, &options, &mut draw)?;
    drop(progress);
    for (hp, m) in &report.last {
        eprintln!("{hp}: final fvu {:.4}, dead {:.2}%", m.fvu, m.dead_fraction * 100.0);
    }
    eprintln!(
        "trained {} steps ({} tokens, {:.0} tokens/s); SAEs in {}",
        report.steps,
        report.tokens,
        report.tokens_per_second,
        args.out.display()
    );
    Ok(())
}
