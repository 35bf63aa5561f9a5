//! An evaluation whose decoding is done by an OpenAI-compatible server (vLLM, SGLang, TGI,
//! `resa serve`): the prompts, seeds, completions file, grading and report are this crate's.

use std::path::Path;

use resa_qwen2::{Tokenizer, hub};

use crate::error::Result;
use crate::{EvalConfig, Progress, Report, Task};

/// An evaluation on an OpenAI-compatible server ([`crate::OpenAiEngine`]): the prompts,
/// seeds, completions file, grading and report of a local evaluation, the decoding done by the
/// server. Only the model's tokenizer and `config.json` are read here (no weights).
pub struct RemoteEvaluation {
    tokenizer: Tokenizer,
    stop_token_ids: Vec<u32>,
    tasks: Vec<Task>,
    cfg: EvalConfig,
    engine: crate::OpenAiConfig,
}

impl RemoteEvaluation {
    /// Reads the tokenizer and the EOS ids of `model` (a folder or hub id: the model the
    /// server serves), and checks `cfg` and `engine` (before any request).
    pub fn new(model: &str, tasks: Vec<Task>, cfg: EvalConfig, engine: crate::OpenAiConfig) -> Result<Self> {
        cfg.validate()?;
        engine.validate()?;
        let dir = hub::resolve_model(model)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let config = resa_qwen2::Qwen2Config::from_file(dir.join("config.json"))?;
        let stop_token_ids = crate::stop_token_ids(&config.eos_token_ids, &tokenizer);
        Ok(RemoteEvaluation { tokenizer, stop_token_ids, tasks, cfg, engine })
    }

    /// The benchmarks.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Sends the next runs to the served model `name` (an adapter served beside the base).
    pub fn with_served_model(&mut self, name: impl Into<String>) {
        self.engine.model = Some(name.into());
    }

    /// Connects to the server (listing its models, retrying while it is unreachable) and runs
    /// every benchmark into `out` (resumed from the completions already there).
    pub fn run(&self, out: &Path, label: &str, on_progress: impl FnMut(&Progress<'_>)) -> Result<Report> {
        let mut engine = crate::OpenAiEngine::connect(self.engine.clone(), self.stop_token_ids.clone())?;
        tracing::info!("evaluating on {}", crate::Engine::describe(&engine));
        Ok(crate::evaluate_with(&mut engine, &self.tokenizer, &self.tasks, &self.cfg, out, label, on_progress)?)
    }
}
