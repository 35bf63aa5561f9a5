//! `resa merge`: fold a PEFT LoRA adapter into its base model and write a Hugging Face
//! checkpoint folder (config.json, model.safetensors in the base model's dtype unless
//! `--dtype` says otherwise, tokenizer files copied) that transformers and vLLM load.

use std::path::PathBuf;

use anyhow::bail;
use burn::tensor::{DType, backend::Backend};
use resa::device::DeviceArgs;
use resa::lora::{base_dtype, load_adapter, save_merged};
use resa::qwen2::safetensors_io::StoredDtype;
use resa::qwen2::{Qwen2ForCausalLM, hub};
use resa::with_backend;

/// Arguments of `resa merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Base model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Stored dtype of the merged weights: bf16, f16 or f32 (default: the base model's).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs the command.
pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    let spec = args.device.device;
    with_backend!(spec, |B, device| { merge::<B>(&args, &device) })
}

fn merge<B: Backend>(args: &MergeArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let stored = match args.dtype.as_deref() {
        None => base_dtype(&dir),
        Some("bf16" | "bfloat16") => StoredDtype::BF16,
        Some("f16" | "float16") => StoredDtype::F16,
        Some("f32" | "float32") => StoredDtype::F32,
        Some(other) => bail!("unknown --dtype `{other}` (expected bf16, f16 or f32)"),
    };
    let mut model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, DType::F32)?;
    let cfg = load_adapter(&mut model, &args.adapter)?;
    save_merged(model, &args.out, stored, Some(&dir))?;
    eprintln!(
        "merged {} (r {}, alpha {}) into {} → {} ({})",
        args.adapter.display(),
        cfg.r,
        cfg.lora_alpha,
        dir.display(),
        args.out.display(),
        stored.name()
    );
    Ok(())
}
