//! `resa features`: reasoning features per layer from one prompt, the Gaussian mixture over
//! layers, suggested hookpoints and figures (see `resa_features`).
//!
//! Writes `counts.json`, `gmm.json`, `figures/*.svg|png` and `summary.md` into `--out`, with
//! `--dataset` a `dashboard.md` of each feature's strongest contexts, and with `--html` the
//! feature dashboard `dashboard.html` (one self-contained page).

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::features::GmmOptions;
use resa::pipeline::features::{Dashboard, FeatureOptions, load_saes, reasoning_features};
use resa::qwen2::{Qwen2ForCausalLM, Tokenizer, hub};
use resa::with_backend;

/// Arguments of `resa features`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// Model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// Folder of sparsify hookpoint folders (`layers.1/`, `layers.2/`, …).
    #[arg(long)]
    pub saes: PathBuf,
    /// The prompt (default: the DeepSeek-R1 system prompt, which holds <think> and </think>).
    #[arg(long)]
    pub prompt: Option<String>,
    /// The opening marker token.
    #[arg(long, default_value = "<think>")]
    pub think_token: String,
    /// The closing marker token.
    #[arg(long, default_value = "</think>")]
    pub end_think_token: String,
    /// A latent counts as active above this activation.
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f32,
    /// Per-hookpoint scores, JSON `{"layers.1": 43.2, …}` (e.g. Pass@1 of SAE-Tuning there).
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Mixture components.
    #[arg(long, default_value_t = 3)]
    pub components: usize,
    /// Seed of the mixture fit.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Question–answer data whose problems are searched for each feature's strongest
    /// contexts (writes dashboard.md).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Rows of --dataset to search.
    #[arg(long, default_value_t = 200)]
    pub dataset_rows: usize,
    /// Contexts kept per feature.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Also write dashboard.html: one self-contained page of the counts, the figure and each
    /// reasoning feature (activation at the markers, decoder neighbours, --dataset contexts).
    #[arg(long)]
    pub html: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { run_on::<B>(&args, &device) })
}

fn run_on<B: Backend>(args: &FeaturesArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, args.compute.dtype)?;
    let saes = load_saes::<B>(&args.saes, model.config().num_hidden_layers, device)?;
    let opts = FeatureOptions {
        prompt: args.prompt.clone(),
        think_token: args.think_token.clone(),
        end_think_token: args.end_think_token.clone(),
        threshold: args.threshold,
        scores: args.scores.clone(),
        gmm: GmmOptions { components: args.components, seed: args.seed, ..GmmOptions::default() },
        dashboard: args.dataset.clone().map(|dataset| Dashboard { dataset, rows: args.dataset_rows, top: args.top }),
        html: args.html,
    };
    let analysis = reasoning_features(&model, &tokenizer, &saes, &opts, &args.out)?;
    print!("{}", resa::features::summary(&analysis));
    eprintln!("counts.json, gmm.json, summary.md and figures in {}", args.out.display());
    Ok(())
}
