//! The whole SAE-Tuning pipeline from one configuration — the five components of the
//! paper's Table 1 (source model, target model, trigger data, elicitation data, SAE mode
//! and hookpoint) plus hyperparameters: Stage I (train, fine-tune or load the SAE), Stage II
//! (SAE-guided SFT of LoRA adapters, or the CoT-free SFT baseline), then the adapter and
//! optionally the merged model. Each stage skips itself when its output exists and was made
//! from the same configuration (recorded in `done.json`).
//!
//! ```toml
//! out = "runs/resa-still"
//! tensorboard = "runs/tensorboard/resa-still"   # optional: metrics as TensorBoard events
//!
//! [source]                 # Stage I: the model whose activations train the SAE
//! model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
//! adapter = "/adapters/Tina-STILL"   # optional: a PEFT adapter merged in first (Tina is one)
//! [target]                 # Stage II: the model that gets the adapter
//! model = "/models/DeepSeek-R1-Distill-Qwen-1.5B"
//!
//! [data]
//! trigger = "still"        # file, folder, registry name or hub id
//! elicitation = "still"
//! template = "reference"   # reference | reference-cot | paper | a string with {problem}, {answer}, {solution}
//!
//! [sae]
//! mode = "finetune"        # scratch | finetune | pretrained
//! path = "EleutherAI/sae-DeepSeek-R1-Distill-Qwen-1.5B-65k"
//! hookpoint = "layers.12"
//!
//! [stage2]
//! lr = 1e-6
//! epochs = 2
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::DType;
use resa_data::{ChunkOptions, Template};
use resa_lora::LoraConfig;
use resa_qwen2::{Hookpoint, Qwen2ForCausalLM, hub};
use resa_sae::{SaeInit, Stage1Options, TrainConfig as SaeTrainConfig};
use resa_tune::{LrSchedule, MemoryEstimate, SaeGrad, Stage2Shape, StepMetrics, TuneConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A model reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Folder (Hugging Face layout) or hub id.
    pub model: String,
    /// A PEFT LoRA adapter (folder, hub id `owner/name`, or `owner/name/subfolder`) merged
    /// into the model before use: RL checkpoints such as Tina are published this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

impl ModelRef {
    /// A plain model reference.
    pub fn new(model: impl Into<String>) -> Self {
        ModelRef { model: model.into(), adapter: None }
    }

    /// Loads the model from `dir` (its resolved folder) and folds in [`ModelRef::adapter`].
    pub fn load<B: burn::tensor::backend::Backend>(
        &self,
        dir: &Path,
        device: &B::Device,
        dtype: DType,
    ) -> Result<Qwen2ForCausalLM<B>> {
        let mut model = Qwen2ForCausalLM::<B>::from_pretrained(dir, device, dtype)?;
        if let Some(spec) = &self.adapter {
            let adapter = hub::resolve_subfolder(spec, &["adapter_config.json", "adapter_model.safetensors"])?;
            resa_lora::load_adapter(&mut model, &adapter)?;
            model = resa_lora::merge_and_unload(model);
        }
        Ok(model)
    }
}

/// Data of both stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Stage I data.
    pub trigger: String,
    /// Stage II data.
    pub elicitation: String,
    /// `reference`, `reference-cot` (the row's solution in the think tags), `paper` or a template string (parsed and checked when the file is read).
    #[serde(default)]
    pub template: Template,
    /// Split of folders and hub datasets.
    #[serde(default = "train")]
    pub split: String,
    /// Tokens per chunk.
    #[serde(default = "ctx")]
    pub ctx_len: usize,
    /// Use at most this many rows of each set (quick runs).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

fn train() -> String {
    "train".into()
}
// The defaults of the file are the libraries' own `Default`s, read from them (never
// copied), so the two cannot drift apart.
fn ctx() -> usize {
    ChunkOptions::default().chunk_len
}

/// How the SAE is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaeMode {
    /// Train from scratch on the source model.
    Scratch,
    /// Fine-tune `path` on the source model.
    Finetune,
    /// Use `path` as it is (no Stage I).
    Pretrained,
}

/// Stage I.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaeSection {
    /// scratch | finetune | pretrained.
    pub mode: SaeMode,
    /// Folder of hookpoint folders (or hub repo) for finetune / pretrained.
    #[serde(default)]
    pub path: Option<String>,
    /// Where the SAE reads and is spliced (reference: `layers.12`); parsed when the file is
    /// read, checked against the models' depth before any stage starts.
    pub hookpoint: Hookpoint,
    /// Latents (scratch).
    #[serde(default = "latents")]
    pub num_latents: usize,
    /// Active latents (scratch).
    #[serde(default = "k")]
    pub k: usize,
    /// Chunks per Stage I step.
    #[serde(default = "sae_batch")]
    pub batch_size: usize,
    /// Learning rate (default sparsify's).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Stop Stage I after this many steps.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Initialisation seed.
    #[serde(default)]
    pub seed: u64,
}

fn latents() -> usize {
    SaeInit::DEFAULT_LATENTS
}
fn k() -> usize {
    SaeInit::DEFAULT_K
}
fn sae_batch() -> usize {
    resa_sae::Stage1Options::default().batch_size
}

/// LoRA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank.
    #[serde(default = "rank")]
    pub r: usize,
    /// Alpha.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// Dropout.
    #[serde(default = "dropout")]
    pub dropout: f64,
    /// Target modules.
    #[serde(default = "targets")]
    pub targets: Vec<String>,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
}

fn rank() -> usize {
    LoraConfig::reference().r
}
fn alpha() -> f64 {
    LoraConfig::reference().lora_alpha
}
fn dropout() -> f64 {
    LoraConfig::reference().lora_dropout
}
fn targets() -> Vec<String> {
    resa_lora::ALL_LINEAR.iter().map(|s| s.to_string()).collect()
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection { r: rank(), alpha: alpha(), dropout: dropout(), targets: targets(), use_rslora: false }
    }
}

/// What Stage II optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectiveKind {
    /// SAE-guided SFT (KL, SAE spliced).
    #[default]
    SaeTuning,
    /// The CoT-free SFT baseline (cross-entropy, no SAE).
    Sft,
}

/// Stage II.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Section {
    /// sae-tuning | sft.
    #[serde(default)]
    pub objective: ObjectiveKind,
    /// Peak learning rate.
    #[serde(default = "lr")]
    pub lr: f64,
    /// The learning-rate schedule: constant, or in the file `cosine = [warm-up steps, floor
    /// ratio]` for a linear warm-up and a cosine decay to `floor × lr`.
    #[serde(default = "constant", rename = "cosine", with = "cosine_form")]
    pub schedule: LrSchedule,
    /// Epochs.
    #[serde(default = "epochs")]
    pub epochs: usize,
    /// Stop after this many steps.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Chunks per micro-batch.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Micro-batches per step and replica.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Data-parallel replicas, one per device from the run's device on (see
    /// [`TuneConfig::data_parallel`]); part of the stage's identity, like the batch size.
    #[serde(default = "one")]
    pub data_parallel: usize,
    /// Checkpoint interval.
    #[serde(default = "save_every")]
    pub save_every: u64,
    /// detach | straight-through | flow.
    #[serde(default)]
    pub sae_grad: SaeGrad,
    /// Also write the merged model.
    #[serde(default)]
    pub merge: bool,
    /// Recompute the student's layers in the backward ([`resa_tune::SaeTuning::with_recompute`]): one
    /// layer's activations held instead of every student layer's, for one more forward of
    /// the student's layers; the same gradients. Needs `sae_grad = "detach"` at a residual
    /// hookpoint. In no stamp: it changes how gradients are computed, not what they are.
    #[serde(default)]
    pub recompute: bool,
}

fn lr() -> f64 {
    TuneConfig::default().lr
}
fn constant() -> LrSchedule {
    TuneConfig::default().schedule
}

/// `[stage2] cosine = [warmup, floor]` (absent: constant) as an [`LrSchedule`]: the file's
/// short form of the schedule.
mod cosine_form {
    use resa_tune::LrSchedule;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(schedule: &LrSchedule, s: S) -> Result<S::Ok, S::Error> {
        match *schedule {
            LrSchedule::Constant => None::<(u64, f64)>.serialize(s),
            LrSchedule::Cosine { warmup_steps, min_lr_ratio } => Some((warmup_steps, min_lr_ratio)).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LrSchedule, D::Error> {
        Ok(match Option::<(u64, f64)>::deserialize(d)? {
            None => LrSchedule::Constant,
            Some((warmup_steps, min_lr_ratio)) => LrSchedule::Cosine { warmup_steps, min_lr_ratio },
        })
    }
}
fn epochs() -> usize {
    TuneConfig::default().epochs
}
fn one() -> usize {
    1
}
fn save_every() -> u64 {
    TuneConfig::default().save_every
}

impl Default for Stage2Section {
    fn default() -> Self {
        Stage2Section {
            objective: ObjectiveKind::SaeTuning,
            lr: lr(),
            schedule: constant(),
            epochs: epochs(),
            max_steps: None,
            batch_size: 1,
            grad_accum: 1,
            data_parallel: 1,
            save_every: save_every(),
            sae_grad: SaeGrad::Detach,
            merge: false,
            recompute: false,
        }
    }
}

/// The whole pipeline's configuration (`resa tune --config run.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Run folder.
    pub out: PathBuf,
    /// Seed of Stage II (data order, dropout).
    #[serde(default = "seed")]
    pub seed: u64,
    /// Stage I model.
    pub source: ModelRef,
    /// Stage II model.
    pub target: ModelRef,
    /// Data.
    pub data: DataSection,
    /// SAE.
    pub sae: SaeSection,
    /// LoRA.
    #[serde(default)]
    pub lora: LoraSection,
    /// Stage II.
    #[serde(default)]
    pub stage2: Stage2Section,
    /// A TensorBoard log folder: every stage's metrics are mirrored there as event files
    /// while the run goes (`resa tensorboard`; not part of any stage's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
}

fn seed() -> u64 {
    TuneConfig::default().seed
}

/// The refusals of one configuration file: [`Error::Invalid`] naming the file, the table,
/// the key, the value and what is allowed.
struct Refuse<'a> {
    file: &'a str,
}

impl Refuse<'_> {
    fn bad(&self, table: &'static str, key: &'static str, value: String, allowed: &str) -> Result<()> {
        Err(Error::Invalid { file: self.file.to_string(), table, key, value, allowed: allowed.to_string() })
    }

    fn positive(&self, table: &'static str, key: &'static str, v: u64) -> Result<()> {
        if v == 0 { self.bad(table, key, v.to_string(), "must be at least 1") } else { Ok(()) }
    }
}

impl PipelineFile {
    /// Reads a TOML file and checks every value ([`PipelineFile::validate`]).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: PipelineFile = toml::from_str(&text).map_err(|e| parse_error(path, &text, &e))?;
        cfg.validate(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Whether Stage II's student starts at the hookpoint from the teacher's activation there
    /// (SAE-Tuning with the `detach` splice at a residual hookpoint): what the shared prefix,
    /// and recomputing the student's layers, need.
    fn student_starts_at_hookpoint(&self) -> bool {
        self.stage2.objective == ObjectiveKind::SaeTuning
            && resa_tune::student_starts_at(self.stage2.sae_grad, self.sae.hookpoint).is_some()
    }

    /// Checks every value that can be checked without the models, naming `file`, the TOML
    /// table and key, the value and what is allowed ([`Error::Invalid`]). [`run_pipeline`](crate::run_pipeline)
    /// calls it (and checks the hookpoint and rank against the models' `config.json`) before
    /// any stage starts.
    pub fn validate(&self, file: &str) -> Result<()> {
        let r = Refuse { file };
        if self.out.as_os_str().is_empty() {
            return r.bad("", "out", "\"\"".into(), "must name the run folder");
        }
        for (table, model) in [("source", &self.source.model), ("target", &self.target.model)] {
            if model.trim().is_empty() {
                return r.bad(table, "model", format!("{model:?}"), "must name a model folder or hub id");
            }
        }
        self.validate_data(&r)?;
        self.validate_sae(&r)?;
        self.validate_lora(&r)?;
        self.validate_stage2(&r)
    }

    /// `[data]`.
    fn validate_data(&self, r: &Refuse<'_>) -> Result<()> {
        for (key, v) in [("trigger", &self.data.trigger), ("elicitation", &self.data.elicitation)] {
            if v.trim().is_empty() {
                return r.bad("data", key, format!("{v:?}"), "must name a dataset (file, folder or hub id)");
            }
        }
        if self.data.ctx_len < 2 || self.data.ctx_len > 1 << 20 {
            return r.bad("data", "ctx_len", self.data.ctx_len.to_string(), "tokens per chunk, 2 ..= 1048576");
        }
        if let Some(n) = self.data.max_rows {
            r.positive("data", "max_rows", n as u64)?;
        }
        Ok(())
    }

    /// `[sae]`.
    fn validate_sae(&self, r: &Refuse<'_>) -> Result<()> {
        match (self.sae.mode, &self.sae.path) {
            (SaeMode::Finetune | SaeMode::Pretrained, None) => {
                return r.bad(
                    "sae",
                    "path",
                    "(missing)".into(),
                    "finetune and pretrained modes need the SAE folder or hub repo",
                );
            }
            (SaeMode::Finetune | SaeMode::Pretrained, Some(p)) if p.trim().is_empty() => {
                return r.bad("sae", "path", format!("{p:?}"), "must name the SAE folder or hub repo");
            }
            _ => {}
        }
        r.positive("sae", "num_latents", self.sae.num_latents as u64)?;
        if self.sae.k == 0 || self.sae.k > self.sae.num_latents {
            return r.bad("sae", "k", self.sae.k.to_string(), &format!("1 ..= num_latents ({})", self.sae.num_latents));
        }
        r.positive("sae", "batch_size", self.sae.batch_size as u64)?;
        if let Some(lr) = self.sae.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return r.bad(
                "sae",
                "lr",
                lr.to_string(),
                "a positive finite learning rate (omit it for sparsify's automatic one)",
            );
        }
        if let Some(n) = self.sae.max_steps {
            r.positive("sae", "max_steps", n)?;
        }
        Ok(())
    }

    /// `[lora]`.
    fn validate_lora(&self, r: &Refuse<'_>) -> Result<()> {
        if self.lora.r == 0 || self.lora.r > 65536 {
            return r.bad(
                "lora",
                "r",
                self.lora.r.to_string(),
                "the rank, 1 ..= 65536 (and at most the model's hidden size)",
            );
        }
        if !(self.lora.alpha.is_finite() && self.lora.alpha > 0.0) {
            return r.bad("lora", "alpha", self.lora.alpha.to_string(), "a positive finite number");
        }
        if !(0.0..1.0).contains(&self.lora.dropout) {
            return r.bad("lora", "dropout", self.lora.dropout.to_string(), "a probability in [0, 1)");
        }
        if self.lora.targets.is_empty() {
            return r.bad(
                "lora",
                "targets",
                "[]".into(),
                &format!("one or more of {}", resa_lora::ALL_LINEAR.join(", ")),
            );
        }
        if let Some(t) = self.lora.targets.iter().find(|t| !resa_lora::ALL_LINEAR.contains(&t.as_str())) {
            return r.bad(
                "lora",
                "targets",
                format!("{t:?}"),
                &format!("Qwen2's linear layers: {}", resa_lora::ALL_LINEAR.join(", ")),
            );
        }
        Ok(())
    }

    /// `[stage2]`, and what it needs of `[sae]`.
    fn validate_stage2(&self, r: &Refuse<'_>) -> Result<()> {
        let s = &self.stage2;
        if !(s.lr.is_finite() && s.lr > 0.0) {
            return r.bad("stage2", "lr", s.lr.to_string(), "a positive finite learning rate");
        }
        if let LrSchedule::Cosine { warmup_steps: warmup, min_lr_ratio: ratio } = s.schedule
            && !(ratio.is_finite() && (0.0..=1.0).contains(&ratio))
        {
            return r.bad("stage2", "cosine", format!("[{warmup}, {ratio}]"), "[warm-up steps, floor ratio in [0, 1]]");
        }
        r.positive("stage2", "epochs", s.epochs as u64)?;
        if let Some(n) = s.max_steps {
            r.positive("stage2", "max_steps", n)?;
        }
        r.positive("stage2", "batch_size", s.batch_size as u64)?;
        r.positive("stage2", "grad_accum", s.grad_accum as u64)?;
        r.positive("stage2", "data_parallel", s.data_parallel as u64)?;
        r.positive("stage2", "save_every", s.save_every)?;
        if s.recompute && !self.student_starts_at_hookpoint() {
            return r.bad(
                "stage2",
                "recompute",
                "true".into(),
                "recomputing the student's layers needs objective = \"sae-tuning\", sae_grad = \"detach\" and a \
                 residual hookpoint (layers.N)",
            );
        }
        if s.objective == ObjectiveKind::Sft && self.sae.mode == SaeMode::Pretrained && self.sae.path.is_none() {
            return r.bad("sae", "path", "(missing)".into(), "pretrained mode needs a path even for the SFT baseline");
        }
        Ok(())
    }

    /// The checks that need the models' `config.json` (models are resolved, not loaded): the
    /// hookpoint's layer exists in the source and the target, and the LoRA rank is at most the
    /// target's hidden size. `file` names the configuration in errors.
    pub fn validate_models(&self, file: &str) -> Result<()> {
        let source_dir = hub::resolve_model(&self.source.model)?;
        let target_dir = hub::resolve_model(&self.target.model)?;
        self.validate_against_models(file, &source_dir, &target_dir).map(|_| ())
    }

    /// [`PipelineFile::validate_models`] on resolved folders; returns the target's
    /// `config.json` when it could be read (the memory check uses it).
    pub(crate) fn validate_against_models(
        &self,
        file: &str,
        source_dir: &Path,
        target_dir: &Path,
    ) -> Result<Option<resa_qwen2::Qwen2Config>> {
        let mut target = None;
        for (table, dir) in [("source", source_dir), ("target", target_dir)] {
            let Ok(cfg) = resa_qwen2::Qwen2Config::from_file(dir.join("config.json")) else { continue };
            if self.sae.hookpoint.within(cfg.num_hidden_layers).is_err() {
                return Err(Error::Invalid {
                    file: file.to_string(),
                    table: "sae",
                    key: "hookpoint",
                    value: format!("\"{}\"", self.sae.hookpoint),
                    allowed: format!(
                        "the {table} model ({}) has {} layers: layers.0 ..= layers.{}",
                        dir.display(),
                        cfg.num_hidden_layers,
                        cfg.num_hidden_layers.saturating_sub(1)
                    ),
                });
            }
            if table == "target" && self.lora.r > cfg.hidden_size {
                return Err(Error::Invalid {
                    file: file.to_string(),
                    table: "lora",
                    key: "r",
                    value: self.lora.r.to_string(),
                    allowed: format!("at most the target's hidden size ({})", cfg.hidden_size),
                });
            }
            if table == "target" {
                target = Some(cfg);
            }
        }
        Ok(target)
    }
}

/// Where Stage II's SAE comes from: `[sae] mode` and `path` of the file as one value.
#[derive(Debug, Clone, PartialEq)]
pub enum SaeSource {
    /// Stage I trains one from scratch on the source model.
    Scratch {
        /// Latents.
        num_latents: usize,
        /// Active latents.
        k: usize,
        /// Initialisation seed.
        seed: u64,
    },
    /// Stage I fine-tunes this SAE (a folder of hookpoint folders, one SAE folder, or a hub
    /// repo) on the source model.
    Finetune {
        /// The SAE to start from.
        from: String,
    },
    /// This SAE is used as it is; there is no Stage I.
    Pretrained {
        /// The SAE (as for [`SaeSource::Finetune`]).
        path: String,
    },
}

impl SaeSource {
    /// Whether Stage I runs (scratch or fine-tune).
    pub fn trains(&self) -> bool {
        !matches!(self, SaeSource::Pretrained { .. })
    }

    /// The mode's name in the file (`scratch`, `finetune`, `pretrained`).
    pub fn mode(&self) -> SaeMode {
        match self {
            SaeSource::Scratch { .. } => SaeMode::Scratch,
            SaeSource::Finetune { .. } => SaeMode::Finetune,
            SaeSource::Pretrained { .. } => SaeMode::Pretrained,
        }
    }
}

/// A run configuration whose every value was checked ([`PipelineFile::validate`]) and turned
/// into the types the stages take: the hookpoint and template (parsed with the file), the
/// SAE source, the [`LoraConfig`] of the target and the trainer's [`TuneConfig`]. It is made
/// only by [`Pipeline::new`] / [`TryFrom`] from a [`PipelineFile`] and cannot be changed
/// afterwards, so holding one means the checks passed; the stages read it and compute their
/// stamps from the file form it keeps ([`Pipeline::file`]), so a stamp is the same as before
/// the split.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    file: PipelineFile,
    sae: SaeSource,
    lora: LoraConfig,
    tune: TuneConfig,
    memory_limit: Option<MemoryLimit>,
}

/// The memory one Stage II step may use, checked before any stage starts
/// ([`Pipeline::with_memory_limit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from, for the message ("available on this machine
    /// (MemAvailable)", "given with --memory-limit").
    pub source: String,
    /// Whether data-parallel replicas share this memory (CPU backends: one host).
    pub shared_by_replicas: bool,
}

impl Pipeline {
    /// Checks `file` (named `name` in errors) and builds the typed configuration.
    pub fn new(file: PipelineFile, name: &str) -> Result<Self> {
        file.validate(name)?;
        let sae = match file.sae.mode {
            SaeMode::Scratch => {
                SaeSource::Scratch { num_latents: file.sae.num_latents, k: file.sae.k, seed: file.sae.seed }
            }
            // `validate` refused a missing or empty path for these two.
            SaeMode::Finetune => SaeSource::Finetune { from: file.sae.path.clone().unwrap_or_default() },
            SaeMode::Pretrained => SaeSource::Pretrained { path: file.sae.path.clone().unwrap_or_default() },
        };
        let targets: Vec<&str> = file.lora.targets.iter().map(String::as_str).collect();
        let mut lora = LoraConfig::new(file.lora.r, file.lora.alpha, file.lora.dropout, &targets);
        lora.use_rslora = file.lora.use_rslora;
        lora.base_model_name_or_path = Some(file.target.model.clone());
        let s = &file.stage2;
        let tune = TuneConfig {
            lr: s.lr,
            schedule: s.schedule,
            epochs: s.epochs,
            max_steps: s.max_steps,
            batch_size: s.batch_size,
            grad_accum: s.grad_accum,
            data_parallel: s.data_parallel,
            seed: file.seed,
            save_every: s.save_every,
            out: file.out.join("stage2"),
            resume: true,
            ..TuneConfig::default()
        };
        Ok(Pipeline { file, sae, lora, tune, memory_limit: None })
    }

    /// Reads a TOML file and checks every value.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Pipeline::new(PipelineFile::from_toml_file(path)?, &path.display().to_string())
    }

    /// The file form this was made from (what the stamps record, what `--dry-run` prints).
    pub fn file(&self) -> &PipelineFile {
        &self.file
    }

    /// The run folder.
    pub fn out(&self) -> &Path {
        &self.file.out
    }

    /// Stage I's model.
    pub fn source(&self) -> &ModelRef {
        &self.file.source
    }

    /// Stage II's model.
    pub fn target(&self) -> &ModelRef {
        &self.file.target
    }

    /// Both stages' data.
    pub fn data(&self) -> &DataSection {
        &self.file.data
    }

    /// Where the SAE reads and is spliced.
    pub fn hookpoint(&self) -> Hookpoint {
        self.file.sae.hookpoint
    }

    /// Where the SAE comes from.
    pub fn sae(&self) -> &SaeSource {
        &self.sae
    }

    /// Stage I's options for `hookpoints` (one SAE each, from one activation pass) into
    /// `out/stage1`; `None` for a pretrained SAE (no Stage I).
    pub fn stage1_options(&self, hookpoints: &[Hookpoint]) -> Option<Stage1Options> {
        let init = match &self.sae {
            SaeSource::Scratch { num_latents, k, seed } => {
                SaeInit::Scratch { num_latents: Some(*num_latents), expansion_factor: 64, k: *k, seed: *seed }
            }
            SaeSource::Finetune { from } => SaeInit::Finetune(PathBuf::from(from)),
            SaeSource::Pretrained { .. } => return None,
        };
        let s = &self.file.sae;
        Some(Stage1Options {
            hookpoints: hookpoints.to_vec(),
            init,
            train: SaeTrainConfig { lr: s.lr, ..SaeTrainConfig::default() },
            batch_size: s.batch_size,
            save_every: 1000,
            max_steps: s.max_steps,
            out: self.file.out.join("stage1"),
            resume: true,
        })
    }

    /// The adapters' configuration (named after the target model).
    pub fn lora(&self) -> &LoraConfig {
        &self.lora
    }

    /// The trainer's configuration (`out/stage2`, resumable, the run's seed).
    pub fn tune(&self) -> &TuneConfig {
        &self.tune
    }

    /// What Stage II optimises.
    pub fn objective(&self) -> ObjectiveKind {
        self.file.stage2.objective
    }

    /// How gradients pass the spliced SAE.
    pub fn sae_grad(&self) -> SaeGrad {
        self.file.stage2.sae_grad
    }

    /// Whether Stage II recomputes the student's layers in the backward (`[stage2] recompute`).
    pub fn recompute(&self) -> bool {
        self.file.stage2.recompute
    }

    /// Whether the merged model is written too.
    pub fn merge(&self) -> bool {
        self.file.stage2.merge
    }

    /// The checks that need the models' `config.json` ([`PipelineFile::validate_models`]).
    pub fn validate_models(&self, name: &str) -> Result<()> {
        self.file.validate_models(name)
    }

    /// Checks one Stage II step against `limit` before any stage starts ([`run_pipeline`](crate::run_pipeline)
    /// refuses the run with [`Error::Memory`] when the step's lower bound is above it).
    pub fn with_memory_limit(mut self, limit: Option<MemoryLimit>) -> Self {
        self.memory_limit = limit;
        self
    }

    /// Runs Stage II as node `nodes.rank` of `nodes.count` processes (one per machine), their
    /// gradients summed with burn-collective ([`resa_tune::Nodes`]); `None` (the default): this
    /// process alone. The node count is part of Stage II's stamp; rank and addresses are not.
    pub fn with_nodes(mut self, nodes: Option<resa_tune::Nodes>) -> Result<Self> {
        if let Some(n) = &nodes {
            n.validate()?;
        }
        self.tune.nodes = nodes;
        Ok(self)
    }

    /// The memory limit set, if any.
    pub fn memory_limit(&self) -> Option<&MemoryLimit> {
        self.memory_limit.as_ref()
    }

    /// A lower bound of one Stage II step's memory on the target model of `target`
    /// (its `config.json`) in `dtype` ([`resa_tune::memory`]), for one replica. The SAE is
    /// counted when its `cfg.json` can be read locally (scratch: `[sae] num_latents`).
    pub fn stage2_memory(&self, target: &resa_qwen2::Qwen2Config, dtype: DType) -> MemoryEstimate {
        self.stage2_memory_with(target, dtype, self.recompute())
    }

    /// [`Pipeline::stage2_memory`] with the student's layers recomputed or not.
    fn stage2_memory_with(&self, target: &resa_qwen2::Qwen2Config, dtype: DType, recompute: bool) -> MemoryEstimate {
        let hookpoint = self.hookpoint();
        let sae = match (self.objective(), &self.sae) {
            (ObjectiveKind::Sft, _) => None,
            (ObjectiveKind::SaeTuning, SaeSource::Scratch { num_latents, .. }) => {
                Some((target.hidden_size, *num_latents))
            }
            (ObjectiveKind::SaeTuning, SaeSource::Finetune { from: path } | SaeSource::Pretrained { path }) => {
                let dir = Path::new(path);
                [dir.join(hookpoint.to_string()), dir.to_path_buf()]
                    .iter()
                    .find_map(|d| resa_sae::SaeConfig::from_file(d.join("cfg.json")).ok())
                    .map(|c| (target.hidden_size, c.latents()))
                    .or(Some((target.hidden_size, 0)))
            }
        };
        let shared_prefix = self.file.student_starts_at_hookpoint();
        let student_from = if shared_prefix { hookpoint.layer() + 1 } else { 0 };
        resa_tune::stage2_memory(&Stage2Shape {
            model: target.clone(),
            lora: self.lora.clone(),
            seq_len: self.file.data.ctx_len,
            micro_batch: self.file.stage2.batch_size,
            dtype_bytes: if matches!(dtype, DType::F32 | DType::Flex32) { 4 } else { 2 },
            sae,
            student_from,
            head: None,
            recompute: shared_prefix && recompute,
        })
    }

    /// [`Pipeline::stage2_memory`] against the limit set (nothing without one); the bound
    /// is multiplied by the replicas when they share the limit's memory.
    pub fn check_memory(&self, target: &resa_qwen2::Qwen2Config, dtype: DType, name: &str) -> Result<MemoryEstimate> {
        let estimate = self.stage2_memory(target, dtype);
        let Some(limit) = &self.memory_limit else { return Ok(estimate) };
        let replicas = if limit.shared_by_replicas { self.tune.data_parallel.max(1) as u64 } else { 1 };
        let needed = estimate.total().saturating_mul(replicas);
        if needed > limit.bytes {
            let text =
                if replicas > 1 { format!("{estimate}, times {replicas} replicas") } else { estimate.to_string() };
            // What recomputing the student's layers would need, when it is possible and off.
            let recompute = if self.recompute() {
                " (already set)".to_string()
            } else if self.file.student_starts_at_hookpoint() {
                let with = self.stage2_memory_with(target, dtype, true).total().saturating_mul(replicas);
                let gib = with as f64 / (1u64 << 30) as f64;
                if with > limit.bytes {
                    format!(": {gib:.2} GiB by the bound, still above the limit")
                } else {
                    format!(": {gib:.2} GiB by the bound, within the limit")
                }
            } else {
                " (not with this objective and splice)".to_string()
            };
            return Err(Error::Memory {
                recompute,
                file: name.to_string(),
                estimate: text,
                needed,
                limit_gib: limit.bytes as f64 / (1u64 << 30) as f64,
                limit_source: limit.source.clone(),
                ctx_len: self.file.data.ctx_len,
                batch_size: self.file.stage2.batch_size,
            });
        }
        Ok(estimate)
    }
}

impl TryFrom<PipelineFile> for Pipeline {
    type Error = Error;

    /// [`Pipeline::new`] with the file named "run configuration" in errors.
    fn try_from(file: PipelineFile) -> Result<Self> {
        Pipeline::new(file, "run configuration")
    }
}

/// A TOML error of `path` (holding `text`) as [`Error::Parse`], its message led by the
/// `[table] key` where the parser stopped (the parser's own message shows the line and the
/// value, and says what was expected, but not the table).
pub(crate) fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e.to_string();
    let Some(span) = e.span() else { return Error::Parse { path: path.to_path_buf(), message } };
    let before = &text[..span.start.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_start_matches('[').split(']').next().unwrap_or_default().trim());
    let at = match (table, key) {
        (Some(t), Some(k)) => format!("[{t}] {k}: "),
        (None, Some(k)) => format!("{k}: "),
        _ => String::new(),
    };
    Error::Parse { path: path.to_path_buf(), message: format!("{at}{message}") }
}

/// Progress events of the pipeline.
#[derive(Debug, Clone, Copy)]
pub enum PipelineEvent<'a> {
    /// A Stage I step (step, total, mean FVU).
    Stage1 {
        /// Steps done.
        step: u64,
        /// Steps in total.
        total: u64,
        /// Mean FVU over hookpoints.
        fvu: f32,
    },
    /// A Stage II step.
    Stage2(&'a StepMetrics),
    /// A stage was skipped because its output is up to date.
    Skipped(&'static str),
}
