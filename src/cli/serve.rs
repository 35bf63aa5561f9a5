//! `resa serve`: an OpenAI-compatible HTTP server over this project's generator
//! (`/v1/completions`, `/v1/chat/completions`, `/v1/models`, `/health`), for a model or a
//! model with a PEFT adapter. When it is ready it prints one line to stdout,
//! `resa serve: listening on http://HOST:PORT/v1 (model NAME[, LORA ...])`, and serves until Ctrl-C or
//! SIGTERM.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::backend::Backend;
use resa::device::ComputeArgs;
use resa::qwen2::{Tokenizer, hub};
use resa::serve::{ServeOptions, Server};
use resa::with_backend;

/// Arguments of `resa serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// A PEFT LoRA adapter folder attached to the model (a Resa adapter, say).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// More adapters served on the same base, each under its own name, as vLLM takes them:
    /// `--lora-modules NAME=DIR [NAME=DIR ...]`.
    #[arg(long, num_args = 1.., value_parser = lora_module)]
    pub lora_modules: Vec<(String, PathBuf)>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: a free one, printed when ready).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The name requests use (default: --model as given, as vLLM names it).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Context length, prompt and completion (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Every request but /health must carry `Authorization: Bearer KEY` (401 otherwise), as
    /// vLLM's --api-key. Prefer the environment variable: a command line is visible to
    /// other users of the machine.
    #[arg(long, env = "RESA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Sequences (choices) waiting or being decoded at most; a request that would overfill
    /// the queue gets 503 (one larger than the whole bound 400).
    #[arg(long, default_value_t = 1024)]
    pub max_queued: usize,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Whether `host` only accepts connections from this machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn lora_module(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => Ok((name.to_string(), PathBuf::from(dir))),
        _ => Err(format!("`{text}` is not NAME=DIR")),
    }
}

/// Runs the command.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { run_on::<B>(&args, &device) })
}

fn run_on<B: Backend>(args: &ServeArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let tokenizer =
        Tokenizer::from_dir(&dir).with_context(|| format!("resa serve needs the tokenizer of {}", dir.display()))?;
    let model = resa::qwen2::Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, args.compute.dtype)?;
    let name = args.served_model_name.clone().unwrap_or_else(|| args.model.clone());
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        served_model_name: name.clone(),
        max_batch: args.max_batch,
        max_model_len: args.max_model_len,
        adapter: args.adapter.clone(),
        lora_modules: args.lora_modules.clone(),
        api_key: args.api_key.clone(),
        max_queued: args.max_queued,
        ..ServeOptions::default()
    };
    if args.api_key.is_none() && !is_loopback(&args.host) {
        tracing::warn!(
            "serving on {} without an API key: anyone who can reach it can use the model (--api-key or RESA_API_KEY)",
            args.host
        );
    }
    let server = Server::start(model, tokenizer, opts)?;
    let mut out = std::io::stdout().lock();
    let mut names = vec![name];
    names.extend(args.lora_modules.iter().map(|(n, _)| n.clone()));
    writeln!(out, "resa serve: listening on http://{}/v1 (model {})", server.addr(), names.join(", "))?;
    out.flush()?;
    drop(out);
    server.wait()?;
    Ok(())
}
