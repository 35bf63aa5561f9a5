//! Stamps: what makes a stage's output reusable, and nothing else.
//!
//! Each stage's stamp is an explicit type whose fields are the values its output depends
//! on, named here and taken from the checked configuration field by field; its JSON is the
//! stage's `done.json`, and a rerun whose stamp is equal skips the stage. Renaming or
//! regrouping a configuration field leaves the stamps as they are; a value that comes to
//! change an output is added here with a new [`STAMP_VERSION`], so every earlier stamp
//! differs and those stages run again. What changes how an output is computed but not what
//! it is (`[stage2] recompute`, the compute device) is not in a stamp.

use resa_qwen2::Hookpoint;
use resa_tune::{LrSchedule, SaeGrad};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::{
    DataSection, LoraSection, ModelRef, ObjectiveKind, PipelineFile, SaeMode, SaeSection, Stage2Section,
};

/// The format of every stamp; a stamp of another version never matches.
pub const STAMP_VERSION: u32 = 1;

/// The data a stage trains on, as it is read, rendered and chunked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataStamp {
    /// The dataset (a file, folder, registry name or hub id).
    pub dataset: String,
    /// Its split.
    pub split: String,
    /// The template's text or name.
    pub template: String,
    /// Tokens per chunk.
    pub ctx_len: usize,
    /// The first rows only, when set.
    pub max_rows: Option<usize>,
}

impl DataStamp {
    fn of(cfg: &PipelineFile, dataset: &str) -> DataStamp {
        // Every field named: a new one must be placed in the stamp or left out on purpose.
        let DataSection { trigger: _, elicitation: _, template, split, ctx_len, max_rows } = cfg.data.clone();
        DataStamp { dataset: dataset.to_string(), split, template: template.into(), ctx_len, max_rows }
    }
}

/// What Stage I's SAEs are made from: the source model, the trigger data, the SAE's
/// settings and every hookpoint trained in the same pass (a sweep trains several). Stage
/// II's stamp holds it, so a new SAE makes a new adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Stamp {
    /// [`STAMP_VERSION`].
    pub version: u32,
    /// The source model and the adapter merged into it.
    pub source: ModelRef,
    /// The trigger data.
    pub trigger: DataStamp,
    /// scratch, finetune or pretrained.
    pub mode: SaeMode,
    /// The SAE fine-tuned from or loaded.
    pub sae_path: Option<String>,
    /// Latents of a new SAE.
    pub num_latents: usize,
    /// Active latents per token.
    pub k: usize,
    /// Stage I's batch size (sequences).
    pub batch_size: usize,
    /// Stage I's learning rate, when set.
    pub lr: Option<f64>,
    /// Stage I's step limit, when set.
    pub max_steps: Option<u64>,
    /// Stage I's seed.
    pub seed: u64,
    /// The hookpoints trained together.
    pub hookpoints: Vec<String>,
}

impl Stage1Stamp {
    /// The stamp of Stage I of `cfg` for `hookpoints` (every hookpoint trained in the same
    /// pass; the run's own `[sae] hookpoint` is Stage II's).
    pub fn new(cfg: &PipelineFile, hookpoints: &[Hookpoint]) -> Stage1Stamp {
        let SaeSection { mode, path, hookpoint: _, num_latents, k, batch_size, lr, max_steps, seed } = cfg.sae.clone();
        Stage1Stamp {
            version: STAMP_VERSION,
            source: cfg.source.clone(),
            trigger: DataStamp::of(cfg, &cfg.data.trigger),
            mode,
            sae_path: path,
            num_latents,
            k,
            batch_size,
            lr,
            max_steps,
            seed,
            hookpoints: hookpoints.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The LoRA adapters trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraStamp {
    /// Rank.
    pub r: usize,
    /// Scaling numerator.
    pub alpha: f64,
    /// Dropout in training.
    pub dropout: f64,
    /// The adapted modules.
    pub targets: Vec<String>,
    /// rsLoRA scaling.
    pub use_rslora: bool,
}

/// What Stage II's adapter is made from: the SAE (its Stage I stamp), the target model, the
/// elicitation data, the adapters, the objective and the trainer's settings, and how many
/// replicas sum each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage2Stamp {
    /// [`STAMP_VERSION`].
    pub version: u32,
    /// Where the spliced SAE comes from.
    pub sae: Stage1Stamp,
    /// Where it is spliced.
    pub hookpoint: String,
    /// The target model and the adapter merged into it.
    pub target: ModelRef,
    /// The elicitation data.
    pub elicitation: DataStamp,
    /// The adapters.
    pub lora: LoraStamp,
    /// sae-tuning or sft.
    pub objective: ObjectiveKind,
    /// How gradients pass the splice.
    pub sae_grad: SaeGrad,
    /// Peak learning rate.
    pub lr: f64,
    /// The schedule.
    pub schedule: LrSchedule,
    /// Epochs.
    pub epochs: usize,
    /// Step limit, when set.
    pub max_steps: Option<u64>,
    /// Chunks per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step and replica.
    pub grad_accum: usize,
    /// Replicas per node.
    pub data_parallel: usize,
    /// Nodes.
    pub nodes: u32,
    /// Checkpoint interval (the checkpoints are part of the output).
    pub save_every: u64,
    /// Data order and dropout.
    pub seed: u64,
}

impl Stage2Stamp {
    /// The stamp of Stage II of `cfg` with the SAE of `sae`, run on `nodes` nodes.
    pub fn new(cfg: &PipelineFile, sae: Stage1Stamp, nodes: u32) -> Stage2Stamp {
        let LoraSection { r, alpha, dropout, targets, use_rslora } = cfg.lora.clone();
        // `merge` makes another stage; `recompute` changes how gradients are computed only.
        let Stage2Section {
            objective,
            lr,
            schedule,
            epochs,
            max_steps,
            batch_size,
            grad_accum,
            data_parallel,
            save_every,
            sae_grad,
            merge: _,
            recompute: _,
        } = cfg.stage2.clone();
        Stage2Stamp {
            version: STAMP_VERSION,
            sae,
            hookpoint: cfg.sae.hookpoint.to_string(),
            target: cfg.target.clone(),
            elicitation: DataStamp::of(cfg, &cfg.data.elicitation),
            lora: LoraStamp { r, alpha, dropout, targets, use_rslora },
            objective,
            sae_grad,
            lr,
            schedule,
            epochs,
            max_steps,
            batch_size,
            grad_accum,
            data_parallel,
            nodes,
            save_every,
            seed: cfg.seed,
        }
    }
}

/// What the merged model is made from: the adapter (its Stage II stamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeStamp {
    /// [`STAMP_VERSION`].
    pub version: u32,
    /// The adapter merged.
    pub adapter: Stage2Stamp,
}

/// A stamp as the text of its `done.json`.
pub fn to_json<T: Serialize>(stamp: &T, what: &str) -> Result<String> {
    serde_json::to_string_pretty(stamp).map_err(|e| Error::json(what, e))
}
