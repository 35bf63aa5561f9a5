//! `resa features`: reasoning features per layer from one prompt, the Gaussian mixture over
//! layers, suggested hookpoints and figures (see `resa_features`).
//!
//! Writes `counts.json`, `gmm.json`, `figures/*.svg|png` and `summary.md` into `--out`, and
//! with `--dataset` a `dashboard.md` of each feature's strongest contexts.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::features::extract::top_contexts;
use resa::features::{GmmOptions, R1_SYSTEM_PROMPT, analyze, extract, read_scores};
use resa::qwen2::{Hookpoint, Qwen2ForCausalLM, Tokenizer, hub};
use resa::sae::SparseCoder;
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
    let layers = model.config().num_hidden_layers;
    let mut saes = Vec::new();
    for (name, sae) in SparseCoder::<B>::load_many(&args.saes, device)? {
        let hp = Hookpoint::parse_for(&name, layers)
            .with_context(|| format!("SAE folder {}", args.saes.join(&name).display()))?;
        saes.push((hp, sae));
    }
    saes.sort_by_key(|(h, _)| (h.layer(), h.to_string()));
    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .with_context(|| format!("the tokenizer of {} has no token `{token}`", dir.display()))
    };
    let (think, end) = (id(&args.think_token)?, id(&args.end_think_token)?);
    let prompt = args.prompt.as_deref().unwrap_or(R1_SYSTEM_PROMPT);
    let ids = tokenizer.encode(prompt, true)?;
    let features = extract(&model, &saes, &ids, think, end, args.threshold)?;
    let scores = args.scores.as_deref().map(read_scores).transpose()?;
    let opts = GmmOptions { components: args.components, seed: args.seed, ..GmmOptions::default() };
    let analysis = analyze(features, scores, &opts, &args.out)?;

    if let Some(spec) = &args.dataset {
        let (rows, _, _) = resa::data::load_dataset(spec, "train", &resa::data::ReadOptions::default())?;
        let texts = rows
            .iter()
            .take(args.dataset_rows)
            .map(|r| tokenizer.encode(&r.problem, true))
            .collect::<Result<Vec<_>, _>>()?;
        let decode = |ids: &[u32]| tokenizer.decode(ids, false).unwrap_or_default().replace('\n', "⏎");
        let mut md = String::from("# Reasoning features: strongest contexts\n\n");
        for ((hp, sae), layer) in saes.iter().zip(&analysis.layers) {
            if layer.latents.is_empty() {
                continue;
            }
            let _ = writeln!(md, "## {hp}\n");
            for (latent, contexts) in top_contexts(&model, *hp, sae, &layer.latents, &texts, args.top, 8, &decode)? {
                let _ = writeln!(md, "### latent {latent}\n");
                if contexts.is_empty() {
                    md.push_str("(never active on the dataset)\n\n");
                }
                for c in contexts {
                    let _ = writeln!(md, "- {:.3}: `{}`**`{}`**`{}`", c.activation, c.before, c.token, c.after);
                }
                md.push('\n');
            }
        }
        resa::qwen2::safetensors_io::write_atomic(args.out.join("dashboard.md"), md.as_bytes())?;
    }
    print!("{}", resa::features::summary(&analysis));
    eprintln!("counts.json, gmm.json, summary.md and figures in {}", args.out.display());
    Ok(())
}
