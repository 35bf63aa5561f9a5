//! `resa debug …`: diagnostics for comparing with the reference implementations.
//!
//! `resa debug stage2-step --model DIR --sae DIR --hookpoint layers.N --adapter PEFT_DIR
//! --input-ids IDS.json --out OUT.safetensors [--sae-grad detach|straight-through]` runs one
//! Stage II forward and backward with dropout off and no update, and writes `kl` [1] and,
//! for every LoRA matrix that receives a gradient, `grad.<PEFT key without the leading
//! base_model.model. and without .default>` in PEFT's shape. Stable.

use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use resa::device::ComputeArgs;
use resa::qwen2::safetensors_io::{OwnedTensor, StoredDtype, write_safetensors};
use resa::qwen2::{AdapterMode, Hookpoint, Qwen2ForCausalLM, hub};
use resa::sae::{SparseCoder, resolve_sae};
use resa::tune::{Head, SaeGrad, lora_gradients, stage2_loss};
use resa::with_backend;

/// `resa debug` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DebugCommand {
    /// One Stage II forward/backward: the KL and the LoRA gradients.
    Stage2Step(Stage2StepArgs),
}

/// Arguments of `resa debug stage2-step`.
#[derive(Debug, clap::Args)]
pub struct Stage2StepArgs {
    /// Target model folder or hub id.
    #[arg(long)]
    pub model: String,
    /// SAE folder (sparsify format) or `owner/repo/hookpoint` with the `hub` feature.
    #[arg(long)]
    pub sae: String,
    /// Where the SAE is spliced.
    #[arg(long)]
    pub hookpoint: String,
    /// PEFT adapter folder.
    #[arg(long)]
    pub adapter: PathBuf,
    /// JSON file `[[id, ...], ...]`, rows of equal length.
    #[arg(long)]
    pub input_ids: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// detach (default), straight-through or flow.
    #[arg(long, default_value = "detach")]
    pub sae_grad: SaeGrad,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs a `resa debug` subcommand.
pub fn run(cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Stage2Step(args) => {
            let spec = args.compute.device;
            with_backend!(spec, |B, device| { stage2_step::<B>(&args, &device) })
        }
    }
}

fn stage2_step<B: Backend>(args: &Stage2StepArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let mut model = Qwen2ForCausalLM::<Autodiff<B>>::from_pretrained(&dir, device, args.compute.dtype)?;
    let hookpoint = args.hookpoint.parse::<Hookpoint>()?.within(model.config().num_hidden_layers)?;
    resa::lora::load_adapter(&mut model, &args.adapter)?;
    let model = resa::lora::trainable(model);
    let sae = SparseCoder::<Autodiff<B>>::load(resolve_sae(&args.sae)?, device)?;
    let (ids, shape) = super::forward::read_ids(&args.input_ids)?;
    let vocab = model.config().vocab_size;
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        anyhow::bail!("{}: token id {bad} is outside the vocabulary ({vocab} ids)", args.input_ids.display());
    }
    let input = Tensor::<Autodiff<B>, 2, Int>::from_data(TensorData::new(ids, shape), device);
    let kl = stage2_loss(&model, &sae, hookpoint, args.sae_grad, input, AdapterMode::On, Head::Full)?;
    let value: Vec<f32> =
        kl.clone().into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let grads = kl.backward();
    let mut tensors = vec![OwnedTensor::from_f32("kl", &value, vec![1], StoredDtype::F32)];
    for (key, g) in lora_gradients(&model, &grads) {
        let shape = g.dims().to_vec();
        let v: Vec<f32> =
            g.cast(DType::F32).into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        tensors.push(OwnedTensor::from_f32(format!("grad.{key}"), &v, shape, StoredDtype::F32));
    }
    write_safetensors(&args.out, &tensors, None).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("kl {:.6}; {} gradients → {}", value[0], tensors.len() - 1, args.out.display());
    Ok(())
}
