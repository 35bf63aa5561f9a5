//! An experiment planned into steps, and the same plan shrunk onto the toy model (`--tiny`).

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{DType, Distribution, Tensor, backend::Backend};
use resa_data::Template;
use resa_pipeline::pipeline::{ModelRef, Pipeline, PipelineFile, SaeMode};
use resa_qwen2::{Hookpoint, Qwen2Config, Qwen2ForCausalLM};
use resa_sae::{SaeConfig, SparseCoder};
use resa_toy::world::{self, ToyWorld};

use crate::error::{Error, Result};
use crate::experiment::{Experiment, PAPER_LAYERS};

/// One step of an experiment's plan: a pipeline run, an evaluation, a feature analysis.
#[derive(Debug, Clone)]
pub enum Step {
    /// Stage I for several hookpoints from one activation pass (a sweep).
    Stage1 {
        /// The sweep's pipeline (its `out` holds `stage1/`).
        cfg: Pipeline,
        /// The hookpoints.
        hookpoints: Vec<Hookpoint>,
    },
    /// `resa tune` (Stage I unless pretrained or done by a sweep, Stage II, adapter).
    Tune {
        /// Label in the results (the hookpoint in a sweep).
        label: String,
        /// The configuration (checked when the plan is made).
        cfg: Pipeline,
    },
    /// An evaluation.
    Eval {
        /// Label in the results.
        label: String,
        /// The model.
        model: ModelRef,
        /// An adapter attached on top (a Stage II output).
        adapter: Option<PathBuf>,
        /// Benchmarks.
        tasks: Vec<String>,
        /// Output folder.
        out: PathBuf,
    },
    /// The reasoning features of the source model in each SAE of a sweep's Stage I (the
    /// paper's Table 6 counts them per layer of Tina-STILL), into `out`.
    Features {
        /// The source model.
        model: ModelRef,
        /// The Stage I folder (one SAE folder per hookpoint).
        saes: PathBuf,
        /// Output folder (`resa features`' files).
        out: PathBuf,
    },
    /// An evaluation of every saved Stage II checkpoint whose step is a multiple of `every`
    /// (the checkpoints are found when the stage runs), each into `out/checkpoint-STEP`.
    EvalCheckpoints {
        /// Label in the results (`LABEL @ step N` per checkpoint).
        label: String,
        /// The model the adapters attach to.
        model: ModelRef,
        /// The Stage II folder holding `checkpoint-STEP/`.
        stage2: PathBuf,
        /// Step interval.
        every: u64,
        /// Benchmarks.
        tasks: Vec<String>,
        /// Output folder.
        out: PathBuf,
    },
}

/// What `--tiny` uses instead of the real things.
#[derive(Debug, Clone)]
pub struct TinyAssets {
    /// The toy model folder.
    pub model: PathBuf,
    /// Toy-world training problems (JSONL).
    pub data: PathBuf,
    /// A folder of random SAEs, one per layer of the toy model (`layers.N/`).
    pub saes: PathBuf,
    /// Folder of made-up adapters, one per adapter named by the experiments.
    pub adapters: PathBuf,
    /// Layers of the toy model.
    pub layers: usize,
}

impl TinyAssets {
    /// Makes (or reuses) the toy assets under `dir` for the toy model at `model`.
    pub fn prepare<B: Backend>(model: &Path, dir: &Path, device: &B::Device) -> Result<TinyAssets> {
        let config = Qwen2Config::from_file(model.join("config.json"))
            .map_err(|e| Error::Usage(format!("--tiny needs the toy model at {}: {e}", model.display())))?;
        let (layers, hidden) = (config.num_hidden_layers, config.hidden_size);
        let data = dir.join("data");
        if !data.join("train.jsonl").is_file() {
            ToyWorld::with_seed(0).write_splits(&data, [64, 0, 0])?;
        }
        let saes = dir.join("saes");
        for layer in 0..layers {
            let at = saes.join(format!("layers.{layer}"));
            if !at.join("cfg.json").is_file() {
                SparseCoder::<B>::random(SaeConfig::new(hidden, 128, 8), layer as u64, device)?.save(&at)?;
            }
        }
        Ok(TinyAssets {
            model: model.to_path_buf(),
            data: data.join("train.jsonl"),
            saes,
            adapters: dir.join("adapters"),
            layers,
        })
    }

    /// A made-up adapter for the toy model standing in for `spec` (made once, seeded by it).
    fn adapter<B: Backend>(&self, spec: &str, device: &B::Device) -> Result<PathBuf> {
        let name: String = spec.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let dir = self.adapters.join(name);
        if dir.join("adapter_config.json").is_file() {
            return Ok(dir);
        }
        let mut model = Qwen2ForCausalLM::<B>::from_pretrained(&self.model, device, DType::F32)?;
        let cfg = resa_lora::LoraConfig::new(4, 8.0, 0.0, &resa_lora::ALL_LINEAR);
        let seed = spec.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        resa_lora::attach(&mut model, &cfg, seed)?;
        B::seed(device, seed);
        for (_, lin) in model.linears_mut() {
            if let Some(ad) = lin.adapter.as_mut() {
                let shape = ad.b.val().dims();
                ad.b = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.01), device));
            }
        }
        resa_lora::save_adapter(&model, &cfg, &dir)?;
        Ok(dir)
    }

    /// `layers.N[.mlp]` of a 28-layer model mapped to the toy model's depth.
    pub fn hookpoint(&self, h: Hookpoint) -> Hookpoint {
        let scale = |n: usize| (n * self.layers / PAPER_LAYERS).min(self.layers - 1);
        match h {
            Hookpoint::Residual(n) => Hookpoint::Residual(scale(n)),
            Hookpoint::Mlp(n) => Hookpoint::Mlp(scale(n)),
        }
    }

    fn model_ref<B: Backend>(&self, r: &ModelRef, device: &B::Device) -> Result<ModelRef> {
        let adapter = r.adapter.as_deref().map(|a| self.adapter::<B>(a, device)).transpose()?;
        Ok(ModelRef { model: self.model.display().to_string(), adapter: adapter.map(|a| a.display().to_string()) })
    }

    /// The experiment's pipeline shrunk onto the toy model.
    fn pipeline<B: Backend>(&self, mut cfg: PipelineFile, device: &B::Device) -> Result<PipelineFile> {
        cfg.source = self.model_ref::<B>(&cfg.source, device)?;
        cfg.target = self.model_ref::<B>(&cfg.target, device)?;
        let data = self.data.display().to_string();
        cfg.data.trigger = data.clone();
        cfg.data.elicitation = data;
        let toy_template =
            if cfg.data.template.needs_solution() { world::TOY_COT_TEMPLATE } else { world::TOY_TEMPLATE };
        cfg.data.template = Template::custom(toy_template)?;
        cfg.data.ctx_len = 48;
        cfg.data.max_rows = None;
        cfg.sae.hookpoint = self.hookpoint(cfg.sae.hookpoint);
        if cfg.sae.mode != SaeMode::Scratch {
            cfg.sae.path = Some(self.saes.display().to_string());
        }
        cfg.sae.num_latents = 128;
        cfg.sae.k = 8;
        cfg.sae.batch_size = 4;
        cfg.sae.max_steps = Some(2);
        cfg.lora.r = cfg.lora.r.min(4);
        cfg.lora.alpha = 4.0 * cfg.lora.r as f64;
        cfg.stage2.max_steps = Some(2);
        cfg.stage2.batch_size = 1;
        cfg.stage2.grad_accum = 1;
        cfg.stage2.data_parallel = 1;
        cfg.stage2.save_every = 2;
        Ok(cfg)
    }
}

/// The stages of `exp`, run into `runs/NAME` (or onto the toy model with `tiny`).
pub fn plan<B: Backend>(
    exp: &Experiment,
    runs: &Path,
    tiny: Option<&TinyAssets>,
    device: &B::Device,
) -> Result<Vec<Step>> {
    let out = runs.join(&exp.name);
    let file = format!("{}.toml ([tune])", exp.name);
    let typed = |cfg: PipelineFile| Pipeline::new(cfg, &file);
    let shrink = |cfg: PipelineFile| -> Result<PipelineFile> {
        match tiny {
            Some(t) => t.pipeline::<B>(cfg, device),
            None => Ok(cfg),
        }
    };
    let tasks = match tiny {
        Some(_) => vec!["toy".to_string()],
        None => exp.eval.tasks.clone(),
    };
    let eval_model = match tiny {
        Some(t) => t.model_ref::<B>(&exp.eval_model()?, device)?,
        None => exp.eval_model()?,
    };
    let mut stages = Vec::new();
    match (&exp.sweep, exp.pipeline(&out)?) {
        (Some(sweep), Some(base)) => {
            let base = shrink(base)?;
            let mut hookpoints: Vec<Hookpoint> =
                sweep.hookpoints.iter().map(|&h| tiny.map_or(h, |t| t.hookpoint(h))).collect();
            hookpoints.dedup();
            if base.sae.mode != SaeMode::Pretrained {
                stages.push(Step::Stage1 { cfg: typed(base.clone())?, hookpoints: hookpoints.clone() });
                stages.push(Step::Features {
                    model: base.source.clone(),
                    saes: out.join("stage1"),
                    out: out.join("features"),
                });
            }
            for &hookpoint in &hookpoints {
                let h = hookpoint.to_string();
                let h = h.as_str();
                let mut cfg = base.clone();
                cfg.out = out.join(h);
                cfg.sae.hookpoint = hookpoint;
                if base.sae.mode != SaeMode::Pretrained {
                    cfg.sae.mode = SaeMode::Pretrained;
                    cfg.sae.path = Some(out.join("stage1").display().to_string());
                }
                let cfg = typed(cfg)?;
                let adapter = cfg.out().join("stage2/adapter");
                let checkpoints = checkpoint_stage(exp, tiny, h, &eval_model, &cfg, &tasks, out.join(h));
                stages.push(Step::Tune { label: h.to_string(), cfg });
                stages.push(Step::Eval {
                    label: h.to_string(),
                    model: eval_model.clone(),
                    adapter: exp.eval.use_adapter.then_some(adapter),
                    tasks: tasks.clone(),
                    out: out.join(h).join("eval"),
                });
                stages.extend(checkpoints);
            }
        }
        (_, Some(cfg)) => {
            let cfg = typed(shrink(cfg)?)?;
            let adapter = cfg.out().join("stage2/adapter");
            let checkpoints = checkpoint_stage(exp, tiny, &exp.name, &eval_model, &cfg, &tasks, out.clone());
            stages.push(Step::Tune { label: exp.name.clone(), cfg });
            stages.push(Step::Eval {
                label: exp.name.clone(),
                model: eval_model,
                adapter: exp.eval.use_adapter.then_some(adapter),
                tasks,
                out: out.join("eval"),
            });
            stages.extend(checkpoints);
        }
        (_, None) => stages.push(Step::Eval {
            label: exp.name.clone(),
            model: eval_model,
            adapter: None,
            tasks,
            out: out.join("eval"),
        }),
    }
    Ok(stages)
}

/// The checkpoint evaluation of one tune stage, when the experiment asks for it.
fn checkpoint_stage(
    exp: &Experiment,
    tiny: Option<&TinyAssets>,
    label: &str,
    model: &ModelRef,
    cfg: &Pipeline,
    tasks: &[String],
    out: PathBuf,
) -> Option<Step> {
    let every = exp.eval.every?;
    exp.eval.use_adapter.then(|| Step::EvalCheckpoints {
        label: label.to_string(),
        model: model.clone(),
        stage2: cfg.out().join("stage2"),
        // The toy run saves every few steps: evaluate those.
        every: if tiny.is_some() { cfg.tune().save_every } else { every },
        tasks: tasks.to_vec(),
        out: out.join("eval-checkpoints"),
    })
}

/// The saved checkpoints of a Stage II folder whose step is a multiple of `every`, by step.
pub fn checkpoints(stage2: &Path, every: u64) -> Vec<(u64, PathBuf)> {
    let mut found = resa_tune::checkpoints(stage2);
    found.retain(|(step, _)| step.is_multiple_of(every.max(1)));
    found
}
