//! Running a plan: the checks before its first step, each step in turn, the evaluation engines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_eval::{EvalConfig, TaskSources};
use resa_pipeline::pipeline::{MemoryLimit, ModelRef, PipelineEvent};
use resa_pipeline::run_stage1;
use resa_qwen2::{Sampling, hub};
use resa_toy::world::{self};

use resa_eval::RemoteEvaluation;
use resa_eval::vllm::{
    BASE_NAME, EngineKind, EngineOptions, PROMPT_ROOM, VllmServer, check_program, free_port, vllm_command,
};
use resa_pipeline::evaluation::{Evaluation, load_tasks};

use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::plan::{Step, checkpoints};
use crate::report::{ResultRow, write_results};

/// The rank `r` of a PEFT adapter folder (vLLM's `--max-lora-rank` must cover it).
fn adapter_rank(dir: &Path) -> Result<usize> {
    Ok(resa_lora::LoraConfig::from_file(dir.join("adapter_config.json"))?.r)
}

/// Where an experiment's benchmarks come from: the user's sources, and the toy world's test
/// split as `toy` (what `--tiny` evaluates on).
fn task_sources(opts: &RunOptions) -> TaskSources {
    opts.sources.clone().with_task(world::World::Arith.test_task(0, 200))
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
                    &resa_pipeline::features::FeatureOptions { html: true, ..Default::default() },
                    out,
                )?;
                for layer in &analysis.layers {
                    feature_counts.insert(layer.hookpoint.to_string(), layer.count);
                }
            }
            Step::Tune { label, cfg } => {
                on_event(RunEvent::Step(i, stages.len(), &format!("resa tune ({label})")));
                resa_pipeline::run_pipeline::<Autodiff<B>>(cfg, device, opts.dtype, &mut |e| {
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
