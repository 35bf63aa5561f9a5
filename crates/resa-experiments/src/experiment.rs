//! An experiment file (`configs/NAME.toml`), and the listing of all of them (`--list`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use resa_pipeline::pipeline::{ModelRef, ObjectiveKind, PipelineFile, SaeMode};
use resa_qwen2::Hookpoint;
use serde::Deserialize;

use resa_eval::vllm::EngineKind;

use crate::error::{Error, Result};

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

/// The number of the first results table an experiment's `table` names (`"Tables 3 and 4"`
/// is `3`), or `None` (`"none"`).
pub fn results_table(table: &str) -> Option<String> {
    results_tables(table).into_iter().next()
}

/// Every results table an experiment's `table` names, in order (`Tables 3 and 4` → 3, 4).
pub fn results_tables(table: &str) -> Vec<String> {
    table.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).map(str::to_string).collect()
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
/// `pretrained` or null), `objective`, `hookpoint`, `hookpoints` (a sweep's) and `title`;
/// `table` lists every results table that reports it (`"3,4"`). A sweep is one object per
/// hookpoint, with that layer's `paper_avg` and `paper_feature_count`. Fields an experiment
/// does not have are null (an evaluation-only baseline has no source;
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
        let tables = results_tables(&e.table);
        let v = serde_json::json!({
            "name": e.name,
            "table": (!tables.is_empty()).then(|| tables.join(",")),
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
        // A sweep is one row per hookpoint, as the paper's table has one per layer.
        let rows: Vec<serde_json::Value> = match &e.sweep {
            Some(sw) => sw
                .hookpoints
                .iter()
                .map(|h| {
                    let key = h.to_string();
                    let mut row = v.clone();
                    row["hookpoint"] = serde_json::json!(key);
                    row["paper_avg"] = serde_json::json!(e.paper_layers.get(&key));
                    row["paper_feature_count"] = serde_json::json!(e.paper_feature_counts.get(&key));
                    row
                })
                .collect(),
            None => vec![v],
        };
        for row in rows {
            s.push_str(&serde_json::to_string(&row).map_err(|e| Error::json("the experiment list", e))?);
            s.push('\n');
        }
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
