//! `resa generate`: continue a prompt with the model.
//!
//! Prints the continuation; with `--json` the last stdout line is
//! `{"ids": [new ids], "text": "..."}`. Stable, like `resa forward`.

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::qwen2::{ChatMessage, GenerationConfig, Qwen2ForCausalLM, Sampling, Tokenizer, generate, hub};
use resa::with_backend;

/// Arguments of `resa generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// Prompt text (tokenised with the model's tokenizer.json).
    #[arg(long, conflicts_with = "prompt_ids", required_unless_present = "prompt_ids")]
    pub prompt: Option<String>,
    /// Wrap the prompt in the model's chat template as one user message.
    #[arg(long, requires = "prompt")]
    pub chat: bool,
    /// Prompt as comma-separated token ids, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Upper bound on new tokens.
    #[arg(long)]
    pub max_new_tokens: usize,
    /// Greedy decoding (the default when no sampling option is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    pub greedy: bool,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass (default 1.0 when sampling).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens when sampling.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Extra stop token id (repeatable); the model's EOS ids always stop.
    #[arg(long = "stop-id")]
    pub stop_ids: Vec<u32>,
    /// Print `{"ids": [...], "text": "..."}` as the last line.
    #[arg(long)]
    pub json: bool,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the command.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { run_on::<B>(&args, &device) })
}

fn run_on<B: Backend>(args: &GenerateArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let tokenizer = if dir.join("tokenizer.json").is_file() { Some(Tokenizer::from_dir(&dir)?) } else { None };
    let prompt: Vec<u32> = match (&args.prompt, &args.prompt_ids) {
        (_, Some(ids)) => ids.clone(),
        (Some(text), None) => {
            let tok = tokenizer.as_ref().with_context(|| {
                format!("--prompt needs {}; use --prompt-ids", dir.join("tokenizer.json").display())
            })?;
            if args.chat { tok.encode_chat(&[ChatMessage::user(text.clone())], true)? } else { tok.encode(text, true)? }
        }
        (None, None) => bail!("give --prompt or --prompt-ids"),
    };
    let model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, args.compute.dtype)?;
    let mut stop = model.config().eos_token_ids.clone();
    if let Some(eos) = tokenizer.as_ref().and_then(Tokenizer::eos_token_id) {
        stop.push(eos);
    }
    stop.extend(&args.stop_ids);
    stop.sort_unstable();
    stop.dedup();
    let sampling = match (args.greedy, args.temperature, args.top_p, args.top_k) {
        (true, ..) | (false, None, None, None) => Sampling::Greedy,
        (false, t, p, k) => Sampling::Sample { temperature: t.unwrap_or(1.0), top_p: p.unwrap_or(1.0), top_k: k },
    };
    let pad = tokenizer.as_ref().and_then(Tokenizer::pad_token_id).or(stop.first().copied()).unwrap_or(0);
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        seed: args.seed,
        stop_token_ids: stop,
        pad_token_id: pad,
    };
    let out = generate(&model, &[prompt], &cfg)?.remove(0);
    let text = match &tokenizer {
        Some(tok) => tok.decode(&out.ids, true)?,
        None => {
            tracing::warn!("{} has no tokenizer.json: text is empty", dir.display());
            String::new()
        }
    };
    println!("{text}");
    if args.json {
        println!("{}", serde_json::json!({ "ids": out.ids, "text": text }));
    }
    Ok(())
}
