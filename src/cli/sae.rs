//! `resa sae …`: sparse-coder utilities.
//!
//! `resa sae encode --sae DIR --input IN.safetensors --out OUT.safetensors` reads `x`
//! [N, d_in] (f32/f16/bf16) and optional `dead_mask` (u8 [L]) and writes `top_acts` [N, k]
//! (f32), `top_indices` (i64 [N, k], each row sorted by index ascending, `top_acts`
//! permuted alike), `sae_out` [N, d_in], `fvu` [1] and, with a dead mask, `auxk_loss` [1].
//! A diagnostic for comparing with other implementations: stable.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use resa::device::DeviceArgs;
use resa::qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};
use resa::sae::{SparseCoder, resolve_sae};
use resa::with_backend;

/// `resa sae` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SaeCommand {
    /// Encode and decode activations with an SAE; write codes, reconstruction and losses.
    Encode(EncodeArgs),
}

/// Arguments of `resa sae encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// sparsify SAE folder (cfg.json + sae.safetensors), or with the `hub` feature
    /// `owner/repo/hookpoint` (e.g. `EleutherAI/sae-DeepSeek-R1-Distill-Qwen-1.5B-65k/layers.12`).
    #[arg(long)]
    pub sae: String,
    /// safetensors file with `x` [N, d_in] and optionally `dead_mask` (u8 [L]).
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Runs a `resa sae` subcommand.
pub fn run(cmd: SaeCommand) -> anyhow::Result<()> {
    match cmd {
        SaeCommand::Encode(args) => {
            let spec = args.device.device;
            with_backend!(spec, |B, device| { encode::<B>(&args, &device) })
        }
    }
}

fn encode<B: Backend>(args: &EncodeArgs, device: &B::Device) -> anyhow::Result<()> {
    let sae = SparseCoder::<B>::load(resolve_sae(&args.sae)?, device)?;
    let input = SafetensorsReader::open_file(&args.input)?;
    let (x, shape) = input.read_f32_any("x").with_context(|| format!("{}: tensor `x`", args.input.display()))?;
    let [n, d] = shape[..] else {
        bail!("{}: `x` has shape {shape:?}, expected [N, d_in] with d_in = {}", args.input.display(), sae.d_in())
    };
    if d != sae.d_in() {
        bail!("{}: `x` has width {d}, the SAE's d_in is {}", args.input.display(), sae.d_in());
    }
    if n == 0 {
        bail!("{}: `x` has no rows", args.input.display());
    }
    let l = sae.num_latents();
    let dead = if input.contains("dead_mask") {
        let (m, s) = input.read_i64_any("dead_mask")?;
        if s != [l] {
            bail!("{}: `dead_mask` has shape {s:?}, expected [{l}] (one entry per latent)", args.input.display());
        }
        Some(Tensor::<B, 1, Int>::from_data(TensorData::new(m, [l]), device).greater_elem(0))
    } else {
        None
    };
    let x = Tensor::<B, 2>::from_data(TensorData::new(x, [n, d]), device);
    let has_dead = dead.is_some();
    let out = sae.forward(x, dead)?;
    let (idx, order) = out.top_indices.sort_with_indices(1);
    let acts = out.top_acts.gather(1, order);
    let k = idx.dims()[1];
    let f32s = |t: Tensor<B, 2>| t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
    let f32_1 = |t: Tensor<B, 1>| t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
    let ids = idx.into_data().convert::<i64>().to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut tensors = vec![
        OwnedTensor::from_f32("top_acts", &f32s(acts)?, vec![n, k], StoredDtype::F32),
        OwnedTensor::from_i64("top_indices", &ids, vec![n, k]),
        OwnedTensor::from_f32("sae_out", &f32s(out.sae_out)?, vec![n, d], StoredDtype::F32),
        OwnedTensor::from_f32("fvu", &f32_1(out.fvu)?, vec![1], StoredDtype::F32),
    ];
    if has_dead {
        tensors.push(OwnedTensor::from_f32("auxk_loss", &f32_1(out.auxk_loss)?, vec![1], StoredDtype::F32));
    }
    write_safetensors(&args.out, &tensors, None)?;
    eprintln!("wrote {} ({n} rows, k {k})", args.out.display());
    Ok(())
}
