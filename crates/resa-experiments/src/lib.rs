#![doc = include_str!("../README.md")]

pub mod error;

pub use error::{Error, Result};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use resa_pipeline::pipeline::{
    MemoryLimit, ModelRef, ObjectiveKind, Pipeline, PipelineEvent, PipelineFile, SaeMode, run_stage1,
};
use burn::backend::Autodiff;
use burn::module::Param;
use burn::tensor::{DType, Distribution, Tensor, backend::Backend};
use resa_data::Template;
use resa_toy::world::{self, ToyWorld};
use resa_eval::{EvalConfig, Report, TaskSources, bench_columns, compare_markdown};
use resa_qwen2::{Hookpoint, Qwen2Config, Qwen2ForCausalLM, Sampling, hub};
use resa_sae::{SaeConfig, SparseCoder};
use serde::{Deserialize, Serialize};

use resa_eval::vllm::{
    BASE_NAME, EngineKind, EngineOptions, PROMPT_ROOM, VllmServer, check_program, free_port, vllm_command,
};
use resa_eval::RemoteEvaluation;
use resa_pipeline::evaluation::{Evaluation, load_tasks};

/// The rank `r` of a PEFT adapter folder (vLLM's `--max-lora-rank` must cover it).
fn adapter_rank(dir: &Path) -> Result<usize> {
    Ok(resa_lora::LoraConfig::from_file(dir.join("adapter_config.json"))?.r)
}

/// Where an experiment's benchmarks come from: the user's sources, and the toy world's test
/// split as `toy` (what `--tiny` evaluates on).
fn task_sources(opts: &RunOptions) -> TaskSources {
    opts.sources.clone().with_task(world::test_task(0, 200))
}

/// The paper's six benchmarks, in its column order.
pub const PAPER_TASKS: [&str; 6] = ["aime24", "aime25", "amc23", "math500", "minerva", "gpqa_diamond"];

/// Layers of the 1.5B models the paper uses; `--tiny` scales hookpoints from this depth.
pub const PAPER_LAYERS: usize = 28;

/// One experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Its name (the file's stem).
    pub name: String,
    /// One line: what it is.
    pub title: String,
    /// Where it is in the paper (`Table 1`, …).
    pub table: String,
    /// Where the components come from, and what is assumed.
    pub provenance: String,
    /// The paper's numbers (Pass@1 %).
    #[serde(default)]
    pub paper: BTreeMap<String, f64>,
    /// The Stage II checkpoint behind the paper's number (its Appendix B; the paper reports
    /// the best of checkpoints saved every 500 steps). Absent where the appendix has none.
    #[serde(default)]
    pub paper_step: Option<u64>,
    /// Stage II steps per epoch in the paper's run (Appendix B).
    #[serde(default)]
    pub steps_per_epoch: Option<u64>,
    /// A sweep's per-hookpoint averages in the paper (`"layers.1" = 47.84`: Table 6 counts
    /// layers from 1, hookpoints from 0).
    #[serde(default)]
    pub paper_layers: BTreeMap<String, f64>,
    /// A sweep's reasoning-feature counts per hookpoint in the paper (Table 6's "Feature
    /// Cnts.", keyed like `paper_layers`).
    #[serde(default)]
    pub paper_feature_counts: BTreeMap<String, usize>,
    /// A `resa tune` configuration without `out`.
    #[serde(default)]
    pub tune: Option<toml::Table>,
    /// Run `tune` once per hookpoint.
    #[serde(default)]
    pub sweep: Option<Sweep>,
    /// What is evaluated.
    pub eval: EvalSection,
}

/// A hookpoint sweep (the paper's Table 6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Hookpoints, each replacing `tune.sae.hookpoint`.
    pub hookpoints: Vec<Hookpoint>,
}

/// The evaluation of an experiment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// The model evaluated; default: the tune section's target.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// Attach the Stage II adapter of this experiment (default when there is a tune section).
    #[serde(default = "yes")]
    pub use_adapter: bool,
    /// Benchmarks (default: the paper's six).
    #[serde(default = "paper_tasks")]
    pub tasks: Vec<String>,
    /// Samples per problem.
    #[serde(default = "one")]
    pub samples: usize,
    /// New-token budget.
    #[serde(default = "budget")]
    pub max_new_tokens: usize,
    /// Prompts generated together.
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Also evaluate every saved Stage II checkpoint whose step is a multiple of this (the
    /// paper evaluates one every 500 steps and reports the best); absent: the final adapter
    /// only. With `--tiny` the toy run's checkpoint interval is used.
    #[serde(default)]
    pub every: Option<u64>,
    /// Which engine decodes: `local` (default), `vllm` (started here for each evaluation)
    /// or `endpoint` (a server the user runs); `resa reproduce --engine` overrides it.
    #[serde(default)]
    pub engine: EngineKind,
    /// Arguments appended to `vllm serve` (`["--tensor-parallel-size", "2"]`).
    #[serde(default)]
    pub vllm_args: Vec<String>,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn budget() -> usize {
    32768
}
fn batch() -> usize {
    8
}
fn paper_tasks() -> Vec<String> {
    PAPER_TASKS.iter().map(|s| s.to_string()).collect()
}

impl Experiment {
    /// Reads and checks one experiment file (its tune section must be a valid `resa tune`
    /// configuration; its name must be the file's stem).
    pub fn from_file(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let exp: Experiment =
            toml::from_str(&text).map_err(|e| Error::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let bad = |message: String| Err(Error::Experiment { path: path.to_path_buf(), message });
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if exp.name != stem {
            return bad(format!("`name` is `{}` but the file is `{stem}.toml`", exp.name));
        }
        if exp.sweep.is_some() && exp.tune.is_none() {
            return bad("a [sweep] needs a [tune] section to repeat".into());
        }
        if exp.eval.every == Some(0) {
            return bad("[eval] every = 0: the checkpoint interval must be at least 1 step".into());
        }
        if exp.eval.every.is_some() && exp.tune.is_none() {
            return bad("[eval] every needs a [tune] section (there are no checkpoints to evaluate)".into());
        }
        if exp.tune.is_none() && exp.eval.model.is_none() {
            return bad("without [tune], [eval] must name a model".into());
        }
        let tune = exp.pipeline(Path::new("runs")).map_err(|e| match e {
            Error::Parse { message, .. } => {
                Error::Parse { path: path.to_path_buf(), message: format!("[tune]: {message}") }
            }
            other => other,
        })?;
        if let Some(cfg) = tune {
            // Every value checked when the file is read, long before a GPU is involved.
            cfg.validate(&format!("{} ([tune])", path.display()))?;
        }
        Ok(exp)
    }

    /// The tune section as a pipeline configuration writing into `out`; `None` without one.
    pub fn pipeline(&self, out: &Path) -> Result<Option<PipelineFile>> {
        let Some(tune) = &self.tune else { return Ok(None) };
        let mut table = tune.clone();
        table.insert("out".into(), toml::Value::String(out.display().to_string()));
        let cfg = table
            .try_into()
            .map_err(|e| Error::Parse { path: PathBuf::from(format!("{}.toml", self.name)), message: e.to_string() })?;
        Ok(Some(cfg))
    }

    /// The model the evaluation runs on.
    pub fn eval_model(&self) -> Result<ModelRef> {
        match (&self.eval.model, self.pipeline(Path::new("runs"))?) {
            (Some(m), _) => Ok(m.clone()),
            (None, Some(cfg)) => Ok(cfg.target),
            (None, None) => Err(Error::Experiment {
                path: PathBuf::from(format!("{}.toml", self.name)),
                message: "[eval] names no model".into(),
            }),
        }
    }
}

/// Every `*.toml` of `dir` but `README`, sorted by name.
pub fn load_experiments(dir: &Path) -> Result<Vec<Experiment>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Experiment::from_file(p)).collect()
}

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
        let toy_template = if cfg.data.template.needs_solution() { world::TOY_COT_TEMPLATE } else { world::TOY_TEMPLATE };
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

/// The paper's Stage II cost: about 20 minutes on 2 GPUs for Resa-STILL-v1's 2 epochs of
/// 1,448 steps (its text: "about 20 minutes and $1"), in GPU-seconds per step.
pub const PAPER_STAGE2_GPU_SECONDS_PER_STEP: f64 = 20.0 * 60.0 * 2.0 / (2.0 * 1448.0);

/// Problems in one evaluation of the paper's six benchmarks.
pub const PAPER_EVAL_PROBLEMS: usize = 30 + 30 + 40 + 500 + 272 + 198;

/// What an experiment's plan costs, from its step counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Stage II optimizer steps over all its runs (a sweep has one per hookpoint); `None`
    /// when the paper gives no steps per epoch for it.
    pub stage2_steps: Option<u64>,
    /// Stage II GPU-hours at `gpu_seconds_per_step`.
    pub stage2_gpu_hours: Option<f64>,
    /// Evaluations of the benchmarks (final adapters and checkpoints).
    pub evaluations: usize,
    /// Evaluation GPU-hours at the given hours per evaluation, when one was given.
    pub eval_gpu_hours: Option<f64>,
}

/// The cost of `stages` for `exp`: Stage II steps from the paper's steps per epoch and
/// the run's epochs (or `max_steps`), at `gpu_seconds_per_step` (default the paper's
/// [`PAPER_STAGE2_GPU_SECONDS_PER_STEP`]); evaluations counted with the checkpoints `every`
/// implies, at `eval_gpu_hours` each when given. Stage I is not estimated (the paper gives
/// no time for it).
pub fn estimate(exp: &Experiment, stages: &[Step], gpu_seconds_per_step: f64, eval_gpu_hours: Option<f64>) -> Budget {
    // Some(0) without a Tune stage; None once a run's steps are unknown.
    let mut steps: Option<u64> = Some(0);
    let mut evaluations = 0usize;
    for stage in stages {
        match stage {
            Step::Tune { cfg, .. } => {
                let per_run = match (cfg.tune().max_steps, exp.steps_per_epoch) {
                    (Some(m), Some(spe)) => Some(m.min(spe * cfg.tune().epochs as u64)),
                    (Some(m), None) => Some(m),
                    (None, Some(spe)) => Some(spe * cfg.tune().epochs as u64),
                    (None, None) => None,
                };
                steps = steps.zip(per_run).map(|(a, b)| a + b);
                if let (Some(n), Some(every)) = (per_run, exp.eval.every) {
                    evaluations += (n / every.max(1)) as usize;
                }
            }
            Step::Eval { .. } => evaluations += 1,
            _ => {}
        }
    }

    Budget {
        stage2_steps: steps,
        stage2_gpu_hours: steps.map(|n| n as f64 * gpu_seconds_per_step / 3600.0),
        evaluations,
        eval_gpu_hours: eval_gpu_hours.map(|h| h * evaluations as f64),
    }
}

impl Budget {
    /// One line: the estimate and where its rates come from.
    pub fn line(&self) -> String {
        let stage2 = match (self.stage2_steps, self.stage2_gpu_hours) {
            (Some(0), _) => "no Stage II".to_string(),
            (Some(n), Some(h)) => format!("Stage II {n} steps ≈ {h:.2} GPU-hours"),
            _ => "Stage II steps unknown (the paper gives no steps per epoch)".to_string(),
        };
        let eval = match self.eval_gpu_hours {
            Some(h) => format!("{} evaluation(s) ≈ {h:.1} GPU-hours", self.evaluations),
            None => format!(
                "{} evaluation(s) of {PAPER_EVAL_PROBLEMS} problems (not estimated: give --eval-gpu-hours)",
                self.evaluations
            ),
        };
        format!("{stage2}; {eval}; Stage I not estimated")
    }
}

/// The plan as text: each stage and its configuration (`--dry-run`).
pub fn describe(exp: &Experiment, stages: &[Step]) -> String {
    let mut s = format!("# {} — {}\n# {}; {}\n", exp.name, exp.title, exp.table, exp.provenance);
    for (i, stage) in stages.iter().enumerate() {
        match stage {
            Step::Stage1 { cfg, hookpoints } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: Stage I ({:?} SAEs) for {} hookpoints from one activation pass into {}",
                    i + 1,
                    cfg.sae().mode(),
                    hookpoints.len(),
                    cfg.out().join("stage1").display()
                );
                let _ = writeln!(s, "hookpoints = {hookpoints:?}");
            }
            Step::Features { model, saes, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa features (reasoning features per hookpoint)\nmodel = {:?}\nsaes = {:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    saes.display().to_string(),
                    out.display().to_string()
                );
            }
            Step::Tune { label, cfg } => {
                let _ = writeln!(s, "\n## stage {}: resa tune ({label})", i + 1);
                s.push_str(&toml::to_string(cfg.file()).unwrap_or_else(|e| format!("(not printable: {e})\n")));
            }
            Step::Eval { label, model, adapter, tasks, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa eval ({label})\nmodel = {:?}{}\nadapter = {}\ntasks = {tasks:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    model.adapter.as_deref().map(|a| format!(" (with {a} merged)")).unwrap_or_default(),
                    adapter.as_ref().map_or("none".to_string(), |a| format!("{:?}", a.display().to_string())),
                    out.display().to_string()
                );
            }
            Step::EvalCheckpoints { label, model, stage2, every, tasks, out } => {
                let _ = writeln!(
                    s,
                    "\n## stage {}: resa eval of every checkpoint ({label})\nmodel = {:?}\ncheckpoints = {:?} (every {every} steps)\ntasks = {tasks:?}\nout = {:?}",
                    i + 1,
                    model.model,
                    stage2.join("checkpoint-*").display().to_string(),
                    out.display().to_string()
                );
            }
        }
    }
    s
}

/// Settings of a run that are not part of an experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compute dtype.
    pub dtype: DType,
    /// Where the benchmarks come from.
    pub sources: TaskSources,
    /// With `--tiny`: problems per evaluation and their token budget.
    pub tiny_eval: Option<(usize, usize)>,
    /// The evaluation engine and its settings.
    pub engine: EngineOptions,
    /// The memory one Stage II step may use, checked for every tune stage before the first
    /// stage runs ([`check_memory`]).
    pub memory_limit: Option<MemoryLimit>,
}

impl RunOptions {
    /// The engine `exp`'s evaluations run on: the override, else its `[eval] engine`.
    pub fn engine_of(&self, exp: &Experiment) -> EngineKind {
        self.engine.kind.unwrap_or(exp.eval.engine)
    }
}

/// Checks, before any stage runs, that one Stage II step of every tune stage of `stages`
/// fits in `opts.memory_limit` (nothing without a limit); the target models' `config.json`
/// are read, no weights.
pub fn check_memory(exp: &Experiment, stages: &[Step], opts: &RunOptions) -> Result<()> {
    let Some(limit) = &opts.memory_limit else { return Ok(()) };
    for stage in stages {
        if let Step::Tune { label, cfg } = stage {
            let dir = hub::resolve_model(&cfg.target().model)?;
            let target = resa_qwen2::Qwen2Config::from_file(dir.join("config.json"))?;
            let name = format!("{}.toml ({label})", exp.name);
            cfg.clone().with_memory_limit(Some(limit.clone())).check_memory(&target, opts.dtype, &name)?;
        }
    }
    Ok(())
}

/// Checks, before any stage runs, that the engine can evaluate `stages`: vLLM's program is
/// there; a server the user runs (`endpoint`) serves one model, so it evaluates one stage
/// without checkpoints.
pub fn check_engine(exp: &Experiment, stages: &[Step], opts: &RunOptions) -> Result<()> {
    let bad = |message: String| Err(Error::Experiment { path: PathBuf::from(format!("{}.toml", exp.name)), message });
    match opts.engine_of(exp) {
        EngineKind::Local => Ok(()),
        EngineKind::Vllm => Ok(check_program(&opts.engine.vllm.program)?),
        EngineKind::Endpoint => {
            let evals: Vec<&str> = stages
                .iter()
                .filter_map(|s| match s {
                    Step::Eval { label, .. } => Some(label.as_str()),
                    Step::EvalCheckpoints { label, .. } => Some(label.as_str()),
                    _ => None,
                })
                .collect();
            let sweeps = stages.iter().any(|s| matches!(s, Step::EvalCheckpoints { .. }));
            if evals.len() > 1 || sweeps {
                return bad(format!(
                    "engine endpoint evaluates the one model your server serves, but this experiment evaluates {} \
                     ({}{}): use engine vllm (it serves each adapter) or local",
                    evals.len(),
                    evals.join(", "),
                    if sweeps { ", with checkpoints" } else { "" }
                ));
            }
            opts.engine.client.validate()?;
            Ok(())
        }
    }
}

/// One measured row of the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRow {
    /// The experiment (or hookpoint of a sweep).
    pub label: String,
    /// The Stage II checkpoint evaluated; absent for the final adapter (or no adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The evaluation's report.
    pub report: Report,
}

/// Progress of a run.
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// A stage begins (index, count, a description).
    Step(usize, usize, &'a str),
    /// Pipeline progress.
    Pipeline(PipelineEvent<'a>),
    /// Evaluation progress.
    Eval(&'a resa_eval::Progress<'a>),
    /// Something the user should see (the command of a started vLLM).
    Message(&'a str),
}

/// Runs the stages (each resumes from its folder) and writes `result.md` / `result.json`
/// into `runs/NAME`; returns the measured rows.
pub fn run<B: Backend>(
    exp: &Experiment,
    stages: &[Step],
    runs: &Path,
    device: &B::Device,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent<'_>),
) -> Result<Vec<ResultRow>> {
    check_engine(exp, stages, opts)?;
    check_memory(exp, stages, opts)?;
    let engine = opts.engine_of(exp);
    let mut rows = Vec::new();
    let mut feature_counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, stage) in stages.iter().enumerate() {
        match stage {
            Step::Stage1 { cfg, hookpoints } => {
                on_event(RunEvent::Step(i, stages.len(), "Stage I (all hookpoints)"));
                let source = hub::resolve_model(&cfg.source().model)?;
                run_stage1::<Autodiff<B>>(cfg, hookpoints, &source, device, opts.dtype, &mut |e| {
                    on_event(RunEvent::Pipeline(e))
                })?;
            }
            Step::Features { model, saes, out } => {
                on_event(RunEvent::Step(i, stages.len(), "resa features (reasoning features per hookpoint)"));
                let dir = hub::resolve_model(&model.model)?;
                let loaded = model.load::<B>(&dir, device, opts.dtype)?;
                let tokenizer = resa_qwen2::Tokenizer::from_dir(&dir)?;
                let layers = loaded.config().num_hidden_layers;
                let coders = resa_pipeline::features::load_saes::<B>(saes, layers, device)?;
                let analysis = resa_pipeline::features::reasoning_features(
                    &loaded,
                    &tokenizer,
                    &coders,
                    &resa_pipeline::features::FeatureOptions::default(),
                    out,
                )?;
                for layer in &analysis.layers {
                    feature_counts.insert(layer.hookpoint.to_string(), layer.count);
                }
            }
            Step::Tune { label, cfg } => {
                on_event(RunEvent::Step(i, stages.len(), &format!("resa tune ({label})")));
                resa_pipeline::pipeline::run_pipeline::<Autodiff<B>>(cfg, device, opts.dtype, &mut |e| {
                    on_event(RunEvent::Pipeline(e))
                })?;
            }
            Step::Eval { label, model, adapter, tasks, out } if engine != EngineKind::Local => {
                on_event(RunEvent::Step(i, stages.len(), &format!("resa eval ({label}) on {engine}")));
                let runs =
                    vec![RemoteRun { label: label.clone(), step: None, adapter: adapter.clone(), out: out.clone() }];
                rows.extend(remote_eval::<B>(exp, model, &runs, tasks, out, device, opts, on_event)?);
            }
            Step::EvalCheckpoints { label, model, stage2, every, tasks, out } if engine != EngineKind::Local => {
                let found = checkpoints(stage2, *every);
                on_event(RunEvent::Step(
                    i,
                    stages.len(),
                    &format!("resa eval of {} checkpoints ({label}, every {every} steps) on {engine}", found.len()),
                ));
                if found.is_empty() {
                    continue;
                }
                let runs: Vec<RemoteRun> = found
                    .into_iter()
                    .map(|(step, dir)| RemoteRun {
                        label: label.clone(),
                        step: Some(step),
                        adapter: Some(dir),
                        out: out.join(format!("checkpoint-{step}")),
                    })
                    .collect();
                rows.extend(remote_eval::<B>(exp, model, &runs, tasks, out, device, opts, on_event)?);
            }
            Step::Eval { label, model, adapter, tasks, out } => {
                on_event(RunEvent::Step(i, stages.len(), &format!("resa eval ({label})")));
                let mut setup = evaluation::<B>(exp, model, tasks, device, opts)?;
                if let Some(a) = adapter {
                    setup.with_adapter(a)?;
                }
                let report = setup.run(out, label, |p| on_event(RunEvent::Eval(p)))?;
                rows.push(ResultRow { label: label.clone(), step: None, report });
            }
            Step::EvalCheckpoints { label, model, stage2, every, tasks, out } => {
                let found = checkpoints(stage2, *every);
                on_event(RunEvent::Step(
                    i,
                    stages.len(),
                    &format!("resa eval of {} checkpoints ({label}, every {every} steps)", found.len()),
                ));
                // The base model and the benchmarks are loaded once; each checkpoint's
                // adapter replaces the previous one.
                if found.is_empty() {
                    continue;
                }
                let mut setup = evaluation::<B>(exp, model, tasks, device, opts)?;
                for (step, dir) in found {
                    setup.with_adapter(&dir)?;
                    let report =
                        setup.run(&out.join(format!("checkpoint-{step}")), &format!("{label} @ step {step}"), |p| {
                            on_event(RunEvent::Eval(p))
                        })?;
                    rows.push(ResultRow { label: label.clone(), step: Some(step), report });
                }
            }
        }
    }
    write_results(exp, &rows, &feature_counts, &runs.join(&exp.name), opts.tiny_eval.is_some())?;
    Ok(rows)
}

/// One evaluation on a remote engine: the adapter it attaches (none: the model as it is).
struct RemoteRun {
    label: String,
    step: Option<u64>,
    adapter: Option<PathBuf>,
    out: PathBuf,
}

/// Evaluates `runs` (the same model, each with its adapter) on vLLM, started here with every
/// adapter as a LoRA module, or on the user's server (`endpoint`, one run). `dir` holds
/// vLLM's command and log.
#[allow(clippy::too_many_arguments)]
fn remote_eval<B: Backend>(
    exp: &Experiment,
    model: &ModelRef,
    runs: &[RemoteRun],
    tasks: &[String],
    dir: &Path,
    device: &B::Device,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent<'_>),
) -> Result<Vec<ResultRow>> {
    let cfg = eval_config(exp, opts);
    let tasks = load_tasks(tasks, &task_sources(opts), opts.tiny_eval.map(|(n, _)| n), true)?;
    let mut rows = Vec::new();
    if opts.engine_of(exp) == EngineKind::Endpoint {
        let evaluation = RemoteEvaluation::new(&model.model, tasks, cfg, opts.engine.client.clone())?;
        for run in runs {
            let report = evaluation.run(&run.out, &run.label, |p| on_event(RunEvent::Eval(p)))?;
            rows.push(ResultRow { label: run.label.clone(), step: run.step, report });
        }
        return Ok(rows);
    }
    // vLLM: the base model, with the model reference's adapter (Tina, say) as a LoRA module of
    // its own, or merged in first when a run attaches another adapter on top of it.
    let base_dir = hub::resolve_model(&model.model)?;
    let model_adapter = model
        .adapter
        .as_deref()
        .map(|a| hub::resolve_subfolder(a, &["adapter_config.json", "adapter_model.safetensors"]))
        .transpose()?;
    let stacked = model_adapter.is_some() && runs.iter().any(|r| r.adapter.is_some());
    let served_dir =
        if stacked { merged_base::<B>(model, &base_dir, &dir.join("merged-base"), device)? } else { base_dir };
    let mut modules: Vec<(String, PathBuf)> = Vec::new();
    if let (Some(a), false) = (&model_adapter, stacked) {
        modules.push(("model-adapter".into(), a.clone()));
    }
    let mut names = Vec::new();
    for run in runs {
        names.push(match (&run.adapter, run.step) {
            (Some(a), step) => {
                let name = step.map_or("adapter".to_string(), |s| format!("checkpoint-{s}"));
                modules.push((name.clone(), a.clone()));
                name
            }
            (None, _) if model_adapter.is_some() && !stacked => "model-adapter".to_string(),
            (None, _) => BASE_NAME.to_string(),
        });
    }
    let rank = modules.iter().map(|(_, d)| adapter_rank(d)).collect::<Result<Vec<_>>>()?.into_iter().max().unwrap_or(0);
    let mut vllm = opts.engine.vllm.clone();
    vllm.extra_args.extend(exp.eval.vllm_args.iter().cloned());
    let port = if vllm.port == 0 { free_port(&vllm.host)? } else { vllm.port };
    let max_model_len = vllm.max_model_len.unwrap_or(cfg.max_new_tokens + PROMPT_ROOM);
    let command = vllm_command(&vllm, &served_dir, port, max_model_len, &modules, rank);
    let line = shell_line(&command);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    resa_publish::write_atomic(dir.join("vllm-command.txt"), format!("{line}\n").as_bytes())?;
    tracing::info!("starting vLLM: {line}");
    on_event(RunEvent::Message(&format!("  vLLM: {line}")));
    let server = VllmServer::start(
        command,
        &vllm.host,
        port,
        &dir.join("vllm.log"),
        std::time::Duration::from_secs_f64(vllm.startup_timeout_s),
    )?;
    let mut client = opts.engine.client.clone();
    client.endpoint = server.endpoint.clone();
    let mut evaluation = RemoteEvaluation::new(&served_dir.display().to_string(), tasks, cfg, client)?;
    for (run, name) in runs.iter().zip(names) {
        evaluation.with_served_model(name);
        let report = evaluation.run(&run.out, &run.label, |p| on_event(RunEvent::Eval(p)))?;
        rows.push(ResultRow { label: run.label.clone(), step: run.step, report });
    }
    server.stop();
    Ok(rows)
}

/// A command line as one shell line (arguments with spaces or quotes single-quoted).
pub fn shell_line(command: &[String]) -> String {
    command
        .iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `model` with its adapter merged in, written once into `dir` as a Hugging Face checkpoint
/// (reused while `merged-from.json` names the same model reference).
fn merged_base<B: Backend>(model: &ModelRef, base_dir: &Path, dir: &Path, device: &B::Device) -> Result<PathBuf> {
    let stamp = serde_json::to_string_pretty(model).map_err(|e| Error::json("merged-from.json", e))?;
    let stamp_file = dir.join("merged-from.json");
    if dir.join("config.json").is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
    {
        return Ok(dir.to_path_buf());
    }
    let loaded = model.load::<B>(base_dir, device, DType::F32)?;
    resa_lora::save_merged(loaded, dir, resa_lora::base_dtype(base_dir), Some(base_dir))?;
    resa_publish::write_atomic(&stamp_file, stamp.as_bytes())?;
    Ok(dir.to_path_buf())
}

/// The experiment's generation settings (`--tiny`: greedy, the toy budget).
fn eval_config(exp: &Experiment, opts: &RunOptions) -> EvalConfig {
    let mut cfg = EvalConfig {
        samples: exp.eval.samples,
        max_new_tokens: exp.eval.max_new_tokens,
        batch_size: exp.eval.batch_size,
        ..EvalConfig::default()
    };
    if let Some((_, tokens)) = opts.tiny_eval {
        cfg.max_new_tokens = tokens;
        cfg.sampling = Sampling::Greedy;
    }
    cfg
}

/// The experiment's evaluation of `model` on `tasks`, loaded once (GPQA is left out, with a
/// warning, when its CSV was not given; `--tiny` cuts the benchmarks and the budget).
fn evaluation<B: Backend>(
    exp: &Experiment,
    model: &ModelRef,
    tasks: &[String],
    device: &B::Device,
    opts: &RunOptions,
) -> Result<Evaluation<B>> {
    let cfg = eval_config(exp, opts);
    let tasks = load_tasks(tasks, &task_sources(opts), opts.tiny_eval.map(|(n, _)| n), true)?;
    Evaluation::new(model, tasks, cfg, device, opts.dtype)
}

/// `result.md` (measured beside the paper) and `result.json`; for a sweep also
/// `scores.json` (`{"layers.N": average}`, the input of `resa features --scores`).
fn write_results(
    exp: &Experiment,
    rows: &[ResultRow],
    feature_counts: &BTreeMap<String, usize>,
    dir: &Path,
    tiny: bool,
) -> Result<()> {
    let mut md = format!("# {} — {}\n\n{} ({}).\n", exp.name, exp.title, exp.table, exp.provenance);
    if tiny {
        md.push_str("\n**--tiny run on the toy model: these numbers are not comparable with the paper's.**\n");
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|r| match r.step {
            Some(step) => format!("{} @ step {step} (measured)", r.label),
            None => format!("{} (measured)", r.label),
        })
        .collect();
    let table: Vec<(&str, &Report)> = labels.iter().map(String::as_str).zip(rows.iter().map(|r| &r.report)).collect();
    md.push('\n');
    md.push_str(&compare_markdown(&table));
    let benches = bench_columns(rows.iter().map(|r| &r.report));
    if !exp.paper.is_empty() {
        let _ = write!(md, "| {} (paper) |", exp.name);
        for b in &benches {
            let _ = write!(md, " {} |", exp.paper.get(*b).map_or(String::new(), |v| format!("{v:.2}")));
        }
        let _ = writeln!(md, " {} |", exp.paper.get("average").map_or(String::new(), |v| format!("{v:.2}")));
    }
    let missing: Vec<&str> = PAPER_TASKS.iter().copied().filter(|t| !benches.contains(t)).collect();
    if !tiny && !missing.is_empty() {
        let _ = writeln!(md, "\nNot run: {} (the average is over the benchmarks run).", missing.join(", "));
    }
    // Per hookpoint of a sweep, as the paper's Table 6: the best checkpoint when checkpoints
    // were evaluated, else the final adapter.
    let mut layer_scores: BTreeMap<&str, f64> = BTreeMap::new();
    if exp.sweep.is_some() {
        for r in rows {
            let has_checkpoints = rows.iter().any(|x| x.label == r.label && x.step.is_some());
            if has_checkpoints == r.step.is_some() {
                let e = layer_scores.entry(r.label.as_str()).or_insert(f64::NEG_INFINITY);
                *e = e.max(r.report.average_pct);
            }
        }
        if !exp.paper_layers.is_empty() {
            md.push_str(
                "\n## Per hookpoint (the paper's Table 6)\n\nAverage Pass@1 and reasoning features (the source model's, in \
                 each hookpoint's SAE).\n\n| hookpoint | measured | paper | features (measured) | features (paper) |\n\
                 |---|---:|---:|---:|---:|\n",
            );
            let mut keys: Vec<&str> =
                layer_scores.keys().copied().chain(exp.paper_layers.keys().map(String::as_str)).collect();
            keys.sort_by_key(|k| k.trim_start_matches("layers.").parse::<usize>().unwrap_or(usize::MAX));
            keys.dedup();
            for k in keys {
                let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
                let count = |v: Option<usize>| v.map_or("–".to_string(), |v| v.to_string());
                let _ = writeln!(
                    md,
                    "| {k} | {} | {} | {} | {} |",
                    cell(layer_scores.get(k).copied()),
                    cell(exp.paper_layers.get(k).copied()),
                    count(feature_counts.get(k).copied()),
                    count(exp.paper_feature_counts.get(k).copied())
                );
            }
        }
    }
    let selections = checkpoint_selections(exp, rows);
    if !selections.is_empty() {
        md.push_str(
            "\n## Checkpoints\n\nThe paper evaluates a checkpoint every 500 steps and reports the best by average: \
             a selection on the test sets themselves, so its numbers are optimistic. Here, per run: the final \
             adapter, the best checkpoint by average (the paper's selection), and the checkpoint at the step \
             the paper reports (Appendix B).\n\n| run | final adapter | best checkpoint | at the paper's step | paper |\n|---|---:|---:|---:|---:|\n",
        );
        for sel in &selections {
            let cell = |x: Option<(u64, f64)>| x.map_or("–".to_string(), |(s, a)| format!("{a:.2} (step {s})"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                sel.label,
                sel.final_avg.map_or("–".to_string(), |a| format!("{a:.2}")),
                cell(sel.best),
                cell(sel.at_paper_step),
                exp.paper.get("average").map_or("–".to_string(), |v| match exp.paper_step {
                    Some(s) => format!("{v:.2} (step {s})"),
                    None => format!("{v:.2}"),
                }),
            );
        }
        #[cfg(feature = "plot")]
        if resa_features::plot::font_available().is_some() {
            for sel in &selections {
                let stem = dir.join(format!("checkpoints-{}", sel.label.replace(['/', ' '], "_")));
                let paper = exp.paper.get("average").copied().zip(exp.paper_step).map(|(a, s)| (s, a));
                match resa_features::plot::checkpoints_figure(&sel.curve, paper, &sel.label, &stem) {
                    Ok(files) => {
                        if let Some(svg) = files.first() {
                            let name = svg.file_name().unwrap_or_default().to_string_lossy();
                            let _ = writeln!(md, "\n![{}]({name})", sel.label);
                        }
                    }
                    Err(e) => tracing::warn!("checkpoint figure not drawn: {e}"),
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    resa_publish::write_atomic(dir.join("result.md"), md.as_bytes())?;
    let json = serde_json::json!({
        "experiment": exp.name,
        "paper": exp.paper,
        "paper_step": exp.paper_step,
        "tiny": tiny,
        "rows": rows,
        "feature_counts": feature_counts,
        "paper_feature_counts": exp.paper_feature_counts,
        "checkpoints": selections.iter().map(|s| serde_json::json!({
            "label": s.label,
            "final_avg": s.final_avg,
            "best": s.best.map(|(step, avg)| serde_json::json!({"step": step, "avg": avg})),
            "at_paper_step": s.at_paper_step.map(|(step, avg)| serde_json::json!({"step": step, "avg": avg})),
        })).collect::<Vec<_>>(),
    });
    resa_publish::write_atomic(
        dir.join("result.json"),
        serde_json::to_string_pretty(&json).map_err(|e| Error::json("result.json", e))?.as_bytes(),
    )?;
    if exp.sweep.is_some() {
        resa_publish::write_atomic(
            dir.join("scores.json"),
            serde_json::to_string_pretty(&layer_scores).map_err(|e| Error::json("scores.json", e))?.as_bytes(),
        )?;
    }
    Ok(())
}

/// Per run label: the final adapter's average, the best checkpoint and the one at the
/// paper's step, and the (step, average) curve.
struct Selection {
    label: String,
    final_avg: Option<f64>,
    best: Option<(u64, f64)>,
    at_paper_step: Option<(u64, f64)>,
    #[cfg_attr(not(feature = "plot"), allow(dead_code))]
    curve: Vec<(u64, f64)>,
}

fn checkpoint_selections(exp: &Experiment, rows: &[ResultRow]) -> Vec<Selection> {
    let mut labels: Vec<&str> = rows.iter().filter(|r| r.step.is_some()).map(|r| r.label.as_str()).collect();
    labels.dedup();
    labels
        .into_iter()
        .map(|label| {
            let curve: Vec<(u64, f64)> = rows
                .iter()
                .filter(|r| r.label == label)
                .filter_map(|r| Some((r.step?, r.report.average_pct)))
                .collect();
            let best = curve.iter().copied().fold(None, |b: Option<(u64, f64)>, x| match b {
                Some(b) if b.1 >= x.1 => Some(b),
                _ => Some(x),
            });
            Selection {
                label: label.to_string(),
                final_avg: rows.iter().find(|r| r.label == label && r.step.is_none()).map(|r| r.report.average_pct),
                best,
                at_paper_step: exp.paper_step.and_then(|p| curve.iter().copied().find(|(s, _)| *s == p)),
                curve,
            }
        })
        .collect()
}

/// The number of the results table an experiment's `table` names last (`"Table 1, 4"` is
/// `4`), or `None` (`"none"`).
pub fn results_table(table: &str) -> Option<String> {
    table.split(|c: char| !c.is_ascii_digit()).rfind(|t| !t.is_empty()).map(str::to_string)
}

fn model_text(m: &ModelRef) -> String {
    match &m.adapter {
        Some(a) => format!("{}+{a}", m.model),
        None => m.model.clone(),
    }
}

/// `--list --json`: one JSON object per line and experiment, with `name`, `table`,
/// `paper_avg`, `paper_step`, `steps_per_epoch`, `source`, `target` (a model id, or
/// `model+adapter`), `trigger`, `elicitation`, `sae_mode` (`scratch`, `finetune`,
/// `pretrained` or null), `objective`, `hookpoint`, `hookpoints` (a sweep's) and `title`.
/// Fields an experiment does not have are null (an evaluation-only baseline has no source;
/// a pre-trained SAE has no source and no trigger). Stable: it is how the plan is checked
/// against the paper.
pub fn list_json(experiments: &[Experiment]) -> Result<String> {
    let mut s = String::new();
    for e in experiments {
        let cfg = e.pipeline(Path::new("runs"))?;
        let target = match &cfg {
            Some(c) => model_text(&c.target),
            None => model_text(&e.eval_model()?),
        };
        let stage1 =
            cfg.as_ref().filter(|c| c.sae.mode != SaeMode::Pretrained && c.stage2.objective != ObjectiveKind::Sft);
        let sae_mode = cfg.as_ref().filter(|c| c.stage2.objective != ObjectiveKind::Sft).map(|c| match c.sae.mode {
            SaeMode::Scratch => "scratch",
            SaeMode::Finetune => "finetune",
            SaeMode::Pretrained => "pretrained",
        });
        let objective = cfg.as_ref().map(|c| match c.stage2.objective {
            ObjectiveKind::SaeTuning => "sae-tuning",
            ObjectiveKind::Sft => "sft",
        });
        let hookpoints = e.sweep.as_ref().map(|sw| sw.hookpoints.clone());
        let hookpoint = match (&hookpoints, &cfg) {
            (None, Some(c)) if c.stage2.objective != ObjectiveKind::Sft => Some(c.sae.hookpoint),
            _ => None,
        };
        let v = serde_json::json!({
            "name": e.name,
            "table": results_table(&e.table),
            "paper_avg": e.paper.get("average"),
            "paper_step": e.paper_step,
            "steps_per_epoch": e.steps_per_epoch,
            "source": stage1.map(|c| model_text(&c.source)),
            "target": target,
            "trigger": stage1.map(|c| c.data.trigger.clone()),
            "elicitation": cfg.as_ref().map(|c| c.data.elicitation.clone()),
            "sae_mode": sae_mode,
            "objective": objective,
            "hookpoint": hookpoint,
            "hookpoints": hookpoints,
            "title": e.title,
        });
        s.push_str(&serde_json::to_string(&v).map_err(|e| Error::json("the experiment list", e))?);
        s.push('\n');
    }
    Ok(s)
}

/// `--list`: name, table, paper average and title of each experiment.
pub fn list(experiments: &[Experiment]) -> String {
    let mut s = String::new();
    for e in experiments {
        let avg = e.paper.get("average").map_or("    –".to_string(), |v| format!("{v:5.2}"));
        let _ = writeln!(s, "{:<26} {:<11} {avg}  {}", e.name, e.table, e.title);
    }
    s
}
