//! The evaluation stage: a model (with any adapter merged or attached), its tokenizer, the
//! benchmarks and the sampling settings, loaded once; adapters can be swapped in and out
//! between runs (checkpoint sweeps, base against tuned), each run resumable from its folder.
//! `resa eval`, `resa reproduce` and `resa demo` evaluate through it.

use std::path::Path;

use burn::tensor::{DType, backend::Backend};
use resa_eval::{EvalConfig, Progress, Report, Task, TaskSources};
use resa_qwen2::{Qwen2ForCausalLM, Tokenizer, hub};

use crate::error::{Error, Result};
use crate::pipeline::ModelRef;

/// A loaded evaluation.
pub struct Evaluation<B: Backend> {
    model: Qwen2ForCausalLM<B>,
    tokenizer: Tokenizer,
    tasks: Vec<Task>,
    cfg: EvalConfig,
}

/// Loads benchmarks by name ([`resa_eval::load_task`]), each cut to its first `limit`
/// problems when given. With `skip_missing_gpqa`, GPQA Diamond is left out (with a warning)
/// when its CSV was not given, as the paper's experiments run without it then.
pub fn load_tasks(
    names: &[String],
    sources: &TaskSources,
    limit: Option<usize>,
    skip_missing_gpqa: bool,
) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    for name in names {
        match resa_eval::load_task(name, sources) {
            Ok(task) => tasks.push(match limit {
                Some(n) => task.truncate(n),
                None => task,
            }),
            Err(resa_eval::Error::MissingData { task, message }) if skip_missing_gpqa && task == "gpqa_diamond" => {
                tracing::warn!("{task} left out: {message}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(tasks)
}

impl<B: Backend> Evaluation<B> {
    /// Loads `model` (a folder or hub id; its `adapter`, if any, merged in) in `dtype` with
    /// its tokenizer, for `tasks` under `cfg` (checked here, before any generation).
    pub fn new(model: &ModelRef, tasks: Vec<Task>, cfg: EvalConfig, device: &B::Device, dtype: DType) -> Result<Self> {
        cfg.validate()?;
        let dir = hub::resolve_model(&model.model)?;
        let tokenizer = Tokenizer::from_dir(&dir)
            .map_err(|e| Error::Tokenizer { model: dir.clone(), message: format!("evaluation needs it: {e}") })?;
        let model = model.load::<B>(&dir, device, dtype)?;
        Ok(Evaluation { model, tokenizer, tasks, cfg })
    }

    /// Attaches the PEFT adapter in `adapter` in place of any adapter the model holds (the
    /// base weights stay as loaded).
    pub fn with_adapter(&mut self, adapter: &Path) -> Result<()> {
        resa_lora::remove(&mut self.model);
        resa_lora::load_adapter(&mut self.model, adapter)?;
        Ok(())
    }

    /// Removes any attached adapter: the base model again.
    pub fn without_adapter(&mut self) {
        resa_lora::remove(&mut self.model);
    }

    /// The benchmarks.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// One evaluation into `out` (resumed from the completions already there), labelled
    /// `label` in the report.
    pub fn run(&self, out: &Path, label: &str, on_progress: impl FnMut(&Progress<'_>)) -> Result<Report> {
        Ok(resa_eval::evaluate(&self.model, &self.tokenizer, &self.tasks, &self.cfg, out, label, on_progress)?)
    }
}
