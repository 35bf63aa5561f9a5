//! Attaching, reading, writing and merging LoRA adapters on a [`Qwen2ForCausalLM`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor, TensorData, backend::AutodiffBackend, backend::Backend};
use rand::{Rng, SeedableRng, rngs::StdRng};
use resa_publish::{replace_dir, temp_sibling, write_atomic};
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, transpose, write_safetensors};
use resa_qwen2::{LowRank, Qwen2ForCausalLM};

use crate::config::{CONFIG_FILE, LoraConfig, Targets, WEIGHTS_FILE};
use crate::error::{Error, Result};

/// PEFT's key prefix for a causal LM's modules.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Names of the modules `cfg` selects in `model`, checking that every named target exists.
pub fn select_modules<B: Backend>(model: &Qwen2ForCausalLM<B>, cfg: &LoraConfig) -> Result<Vec<String>> {
    let names: Vec<String> = model.linears().into_iter().map(|(n, _)| n).collect();
    if let Targets::Names(targets) = &cfg.target_modules {
        for t in targets {
            if !names.iter().any(|n| n == t || n.ends_with(&format!(".{t}"))) {
                return Err(Error::UnknownTarget { target: t.clone() });
            }
        }
    }
    let chosen: Vec<String> = names.into_iter().filter(|n| cfg.matches(n)).collect();
    if chosen.is_empty() {
        return Err(Error::Config {
            path: PathBuf::from("<LoraConfig>"),
            field: "target_modules".into(),
            message: format!("{:?} with layers {:?} selects no module", cfg.target_modules, cfg.layers_to_transform),
        });
    }
    Ok(chosen)
}

fn check_no_adapters<B: Backend>(model: &Qwen2ForCausalLM<B>) -> Result<()> {
    if let Some((name, _)) = model.linears().into_iter().find(|(_, l)| l.adapter.is_some()) {
        return Err(Error::State(format!("the model already carries an adapter (on {name}); remove it first")));
    }
    Ok(())
}

/// Gives each module named in `chosen` an adapter of `cfg`'s scale and dropout, with the
/// `A` `[in, r]` and `B` `[r, out]` that `make(name, out, in, device)` returns.
fn attach_each<B: Backend>(
    model: &mut Qwen2ForCausalLM<B>,
    chosen: &[String],
    cfg: &LoraConfig,
    mut make: impl FnMut(&str, usize, usize, &B::Device) -> Result<(Tensor<B, 2>, Tensor<B, 2>)>,
) -> Result<()> {
    for (name, lin) in model.linears_mut() {
        if !chosen.contains(&name) {
            continue;
        }
        let (out, inp) = lin.dims();
        let (a, b) = make(&name, out, inp, &lin.weight.val().device())?;
        let (scale, dropout) = (cfg.scale(), cfg.lora_dropout);
        lin.adapter =
            Some(LowRank { a: Param::from_tensor(a), b: Param::from_tensor(b), scale, dropout, merged: false });
    }
    Ok(())
}

/// Attaches fresh adapters as PEFT initialises them: A Kaiming-uniform (bound 1/√in),
/// B zero, so the model's output is unchanged. Adapter weights take the model's dtype.
/// Returns the adapted module names.
pub fn attach<B: Backend>(model: &mut Qwen2ForCausalLM<B>, cfg: &LoraConfig, seed: u64) -> Result<Vec<String>> {
    cfg.validate(Path::new("<LoraConfig>"))?;
    check_no_adapters(model)?;
    let chosen = select_modules(model, cfg)?;
    let dtype = model.dtype();
    // A rank above both sides of a layer adds parameters but no expressiveness, and an
    // absurd one would abort in the allocator: refuse it with the size it would take.
    let linears = model.linears();
    let targeted: Vec<(usize, usize)> =
        linears.iter().filter(|(n, _)| chosen.contains(n)).map(|(_, l)| l.dims()).collect();
    if let Some(&(out, inp)) = targeted.iter().find(|(out, inp)| cfg.r > (*out).max(*inp)) {
        let bytes: usize = targeted.iter().map(|(o, i)| cfg.r.saturating_mul(o + i).saturating_mul(4)).sum();
        return Err(Error::Config {
            path: Path::new("<LoraConfig>").into(),
            field: "r".into(),
            message: format!(
                "rank {} exceeds both sides of a targeted layer ({inp} → {out}); at most {} is useful there, and \
                 this rank would need {:.1} GiB of adapter weights",
                cfg.r,
                out.max(inp),
                bytes as f64 / (1u64 << 30) as f64
            ),
        });
    }
    drop(linears);
    let mut rng = StdRng::seed_from_u64(seed);
    let r = cfg.r;
    attach_each(model, &chosen, cfg, |_, out, inp, device| {
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..inp * r).map(|_| rng.random_range(-bound..bound)).collect();
        let a = Tensor::from_data(TensorData::new(a, [inp, r]), (device, dtype));
        Ok((a, Tensor::zeros([r, out], (device, dtype))))
    })?;
    Ok(chosen)
}

/// Removes every adapter (merged ones stay folded into the weights). Returns how many.
pub fn remove<B: Backend>(model: &mut Qwen2ForCausalLM<B>) -> usize {
    model.linears_mut().into_iter().filter_map(|(_, l)| l.adapter.take()).count()
}

/// Reads a PEFT adapter folder and attaches it to `model`, which must have the shapes the
/// adapter was trained on (it need not be the same model: the paper's "reasoning as an
/// adapter" moves one between models of a family). Returns its config.
pub fn load_adapter<B: Backend>(model: &mut Qwen2ForCausalLM<B>, dir: impl AsRef<Path>) -> Result<LoraConfig> {
    let dir = dir.as_ref();
    let cfg_path = dir.join(CONFIG_FILE);
    if !cfg_path.is_file() {
        return Err(Error::io(
            &cfg_path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "adapter_config.json not found (not a PEFT adapter folder)",
            ),
        ));
    }
    // An adapter written by resa carries a manifest of content hashes: a damaged one is
    // refused, naming the file; one from elsewhere has none and loads as it is.
    resa_publish::manifest::verify(dir)?;
    let cfg = LoraConfig::from_file(&cfg_path)?;
    check_no_adapters(model)?;
    let chosen = select_modules(model, &cfg)?;
    let weights = dir.join(WEIGHTS_FILE);
    let reader = SafetensorsReader::open_file(&weights)?;
    let expected: BTreeSet<String> = chosen
        .iter()
        .flat_map(|n| [format!("{PEFT_PREFIX}{n}.lora_A.weight"), format!("{PEFT_PREFIX}{n}.lora_B.weight")])
        .collect();
    for key in reader.keys() {
        if !expected.contains(key) {
            return Err(resa_qwen2::Error::UnexpectedTensor { key: key.to_string(), path: weights.clone() }.into());
        }
    }
    let (dtype, r) = (model.dtype(), cfg.r);
    attach_each(model, &chosen, &cfg, |name, out, inp, device| {
        let read = |suffix: &str, shape: [usize; 2]| -> Result<Tensor<B, 2>> {
            let key = format!("{PEFT_PREFIX}{name}.{suffix}");
            if !reader.contains(&key) {
                return Err(resa_qwen2::Error::MissingTensor { key, path: weights.clone() }.into());
            }
            let v = reader.read_f32_finite(&key, &shape)?;
            // PEFT stores [r, in] and [out, r]; the model multiplies by their transposes.
            let t = transpose(&v, shape[0], shape[1]);
            Ok(Tensor::from_data(TensorData::new(t, [shape[1], shape[0]]), (device, dtype)))
        };
        Ok((read("lora_A.weight", [r, inp])?, read("lora_B.weight", [out, r])?))
    })?;
    Ok(cfg)
}

/// Writes the attached adapters as a PEFT folder (`adapter_config.json`,
/// `adapter_model.safetensors` with PEFT's key names and layouts, stored in the adapters'
/// dtype). The folder is assembled under a temporary name and renamed into place.
pub fn save_adapter<B: Backend>(model: &Qwen2ForCausalLM<B>, cfg: &LoraConfig, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    cfg.validate(Path::new("<LoraConfig>"))?;
    let mut tensors = Vec::new();
    for (name, lin) in model.linears() {
        let Some(ad) = &lin.adapter else { continue };
        if ad.merged {
            return Err(Error::State(format!("the adapter on {name} is merged; unmerge before saving it")));
        }
        let stored = match ad.a.val().dtype() {
            DType::BF16 => StoredDtype::BF16,
            DType::F16 => StoredDtype::F16,
            _ => StoredDtype::F32,
        };
        // [in, r] → lora_A [r, in]; [r, out] → lora_B [out, r].
        for (suffix, t) in [("lora_A.weight", ad.a.val()), ("lora_B.weight", ad.b.val())] {
            let t = t.transpose();
            let shape = t.dims().to_vec();
            let v: Vec<f32> = t.cast(DType::F32).into_data().iter::<f32>().collect();
            tensors.push(OwnedTensor::from_f32(format!("{PEFT_PREFIX}{name}.{suffix}"), &v, shape, stored));
        }
    }
    if tensors.is_empty() {
        return Err(Error::State("the model carries no adapter to save".into()));
    }
    let tmp = temp_sibling(dir, "tmp")?;
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(tmp.join(WEIGHTS_FILE), &tensors, Some(meta))?;
    write_atomic(tmp.join(CONFIG_FILE), cfg.to_json()?.as_bytes())?;
    resa_publish::manifest::write_manifest(&tmp)?;
    Ok(replace_dir(&tmp, dir)?)
}

/// Folds every unmerged adapter into its base weight (`W += scale · A B`) and marks it
/// merged, so the forward no longer adds it. Returns how many were merged.
pub fn merge<B: Backend>(model: &mut Qwen2ForCausalLM<B>) -> usize {
    fold(model, true)
}

/// Undoes [`merge`] (`W −= scale · A B`); the adapters act again. Returns how many.
pub fn unmerge<B: Backend>(model: &mut Qwen2ForCausalLM<B>) -> usize {
    fold(model, false)
}

fn fold<B: Backend>(model: &mut Qwen2ForCausalLM<B>, into: bool) -> usize {
    let mut n = 0;
    for (_, lin) in model.linears_mut() {
        let Some(ad) = lin.adapter.as_mut() else { continue };
        if ad.merged == into {
            continue;
        }
        let w = lin.weight.val();
        let dtype = w.dtype();
        let delta = ad.a.val().cast(DType::F32).matmul(ad.b.val().cast(DType::F32)).mul_scalar(ad.scale);
        let w32 = w.cast(DType::F32);
        let new = if into { w32 + delta } else { w32 - delta };
        lin.weight = Param::from_tensor(new.cast(dtype));
        ad.merged = into;
        n += 1;
    }
    n
}

/// Merges the adapters and removes them: a plain model with the adapted weights.
pub fn merge_and_unload<B: Backend>(mut model: Qwen2ForCausalLM<B>) -> Qwen2ForCausalLM<B> {
    merge(&mut model);
    remove(&mut model);
    model
}

/// Writes a merged Hugging Face checkpoint: `config.json`, `model.safetensors` in `dtype`
/// (use the base model's), and the tokenizer files of `tokenizer_from` when given, so the
/// folder loads in transformers, vLLM or this project as a plain model.
pub fn save_merged<B: Backend>(
    model: Qwen2ForCausalLM<B>,
    out: impl AsRef<Path>,
    dtype: StoredDtype,
    tokenizer_from: Option<&Path>,
) -> Result<()> {
    let out = out.as_ref();
    let merged = merge_and_unload(model);
    let tmp = temp_sibling(out, "tmp")?;
    merged.save_pretrained(&tmp, dtype)?;
    if let Some(src) = tokenizer_from {
        for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"] {
            let p = src.join(f);
            if p.is_file() {
                std::fs::copy(&p, tmp.join(f)).map_err(|e| Error::io(&p, e))?;
            }
        }
    }
    Ok(replace_dir(&tmp, out)?)
}

/// Freezes the base model and makes only the adapters trainable (for training on an
/// autodiff backend): base parameters get no gradient.
pub fn trainable<B: AutodiffBackend>(model: Qwen2ForCausalLM<B>) -> Qwen2ForCausalLM<B> {
    let mut model = model.no_grad();
    for (_, lin) in model.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut() {
            ad.a = ad.a.clone().set_require_grad(true);
            ad.b = ad.b.clone().set_require_grad(true);
        }
    }
    model
}

/// The dtype a merged checkpoint should be stored in: the base checkpoint's (`torch_dtype`
/// / `dtype` of its config.json), else bf16.
pub fn base_dtype(base_dir: &Path) -> StoredDtype {
    let text = std::fs::read_to_string(base_dir.join("config.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let name = v.get("torch_dtype").or_else(|| v.get("dtype")).and_then(|d| d.as_str()).unwrap_or("bfloat16");
    StoredDtype::from_torch_name(name).unwrap_or(StoredDtype::BF16)
}
