//! `resa forward`: logits and hookpoint activations for given token ids.
//!
//! Reads `[[id, ...], ...]` (rows of equal length) and writes a safetensors file with
//! `logits` (f32, `[batch, seq, vocab]`) and one f32 `[batch, seq, hidden]` tensor per
//! requested hookpoint, named exactly as the hookpoint. With `--adapter`, a PEFT LoRA
//! adapter folder is applied first. This is how the model is compared
//! with other implementations; its inputs and outputs are stable.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use resa::device::ComputeArgs;
use resa::qwen2::safetensors_io::{OwnedTensor, StoredDtype, write_safetensors};
use resa::qwen2::{ForwardInput, Hookpoint, Hooks, Qwen2ForCausalLM, hub};
use resa::with_backend;

/// Arguments of `resa forward`.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Model folder (Hugging Face layout) or hub id (with the `hub` feature).
    #[arg(long)]
    pub model: String,
    /// JSON file holding `[[id, ...], ...]`, rows of equal length.
    #[arg(long)]
    pub input_ids: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// PEFT adapter folder to apply (LoRA on top of the model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Hookpoint to capture (`layers.N` or `layers.N.mlp`); repeatable.
    #[arg(long = "hookpoint")]
    pub hookpoints: Vec<String>,
    /// Where and in which dtype to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Reads the ids file: a non-empty list of non-empty rows of equal length.
pub fn read_ids(path: &PathBuf) -> anyhow::Result<(Vec<i64>, [usize; 2])> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<Vec<i64>> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of lists of token ids, e.g. [[1, 2, 3]]", path.display()))?;
    let Some(first) = rows.first() else { bail!("{}: no rows", path.display()) };
    if first.is_empty() {
        bail!("{}: row 0 is empty", path.display());
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != first.len()) {
        bail!(
            "{}: row {i} has {} ids, row 0 has {}; rows must have equal length",
            path.display(),
            r.len(),
            first.len()
        );
    }
    if let Some(bad) = rows.iter().flatten().find(|&&t| t < 0) {
        bail!("{}: negative token id {bad}", path.display());
    }
    let shape = [rows.len(), first.len()];
    Ok((rows.into_iter().flatten().collect(), shape))
}

/// Runs the command.
pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let spec = args.compute.device;
    with_backend!(spec, |B, device| { forward::<B>(&args, &device) })
}

fn forward<B: Backend>(args: &ForwardArgs, device: &B::Device) -> anyhow::Result<()> {
    let dir = hub::resolve_model(&args.model)?;
    let mut model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, args.compute.dtype)?;
    if let Some(adapter) = &args.adapter {
        resa::lora::load_adapter(&mut model, adapter)?;
    }
    let cfg = model.config();
    let points = args
        .hookpoints
        .iter()
        .map(|h| h.parse::<Hookpoint>().and_then(|h| h.within(cfg.num_hidden_layers)))
        .collect::<Result<Vec<_>, _>>()?;
    let (ids, shape) = read_ids(&args.input_ids)?;
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        bail!("{}: token id {bad} is outside the vocabulary ({} ids)", args.input_ids.display(), cfg.vocab_size);
    }
    let input = ForwardInput::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), device));
    let out = model.forward(input, &Hooks::capture(points.clone()), None)?;
    let to_f32 = |t: Tensor<B, 3>| -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
        let dims = t.dims().to_vec();
        let v =
            t.cast(DType::F32).into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok((v, dims))
    };
    let mut tensors = Vec::new();
    let (v, s) = to_f32(out.logits.clone().context("forward returned no logits")?)?;
    tensors.push(OwnedTensor::from_f32("logits", &v, s, StoredDtype::F32));
    for hp in &points {
        let t = out.activation(*hp).context("hookpoint not captured")?.clone();
        let (v, s) = to_f32(t)?;
        if !tensors.iter().any(|t: &OwnedTensor| t.name == hp.to_string()) {
            tensors.push(OwnedTensor::from_f32(hp.to_string(), &v, s, StoredDtype::F32));
        }
    }
    write_safetensors(&args.out, &tensors, None)?;
    eprintln!("wrote {} ({} tensors)", args.out.display(), tensors.len());
    Ok(())
}
