//! A whole run: Stage I, Stage II (or the SFT baseline) and the merged model, each stage
//! skipped when its output is up to date ([`run_pipeline`]); Stage I alone for several
//! hookpoints ([`run_stage1`]).

use std::path::{Path, PathBuf};

use burn::tensor::{DType, backend::AutodiffBackend};
use resa_qwen2::{Hookpoint, hub};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineEvent, SaeSource};
use crate::stage::{AdapterTraining, Merge, SaeTraining, run_stage};
use crate::stamp::Stage1Stamp;

/// What the pipeline produced.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The SAE folder used in Stage II.
    pub sae: PathBuf,
    /// Whether Stage I ran (false: skipped or pretrained).
    pub stage1_ran: bool,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// Whether Stage II ran (false: skipped, output up to date).
    pub stage2_ran: bool,
    /// First and last Stage II loss of this invocation.
    pub stage2_loss: Option<(f32, f32)>,
    /// The merged model folder, when asked for.
    pub merged: Option<PathBuf>,
}

/// Stage I alone ([`SaeTraining`] through [`run_stage`]): one SAE per hookpoint of
/// `hookpoints`, all from one activation pass, into `out/stage1/<hookpoint>/`; skipped
/// when that folder was made from the same configuration. Returns the folder and whether it
/// trained. `source_dir` is the resolved folder of the source model.
pub fn run_stage1<B: AutodiffBackend>(
    pipeline: &Pipeline,
    hookpoints: &[Hookpoint],
    source_dir: &Path,
    device: &B::Device,
    dtype: DType,
    on_event: &mut dyn FnMut(PipelineEvent<'_>),
) -> Result<(PathBuf, bool)> {
    let stage = SaeTraining { pipeline, hookpoints: hookpoints.to_vec(), source_dir: source_dir.to_path_buf() };
    run_stage::<B, _>(&stage, device, dtype, on_event)
}

/// The folder of one hookpoint's SAE from `[sae] path` (a local folder of hookpoint folders,
/// a single SAE folder, or a hub repo `owner/name` whose `<hookpoint>/` is fetched), as
/// [`resa_sae::sae_folder`] finds it.
pub fn sae_folder(path: &str, hookpoint: Hookpoint) -> Result<PathBuf> {
    Ok(resa_sae::sae_folder(Path::new(path), &hookpoint.to_string(), true)?)
}

/// The file in a run folder that holds the run's configuration as it was resolved (every
/// default filled in), written before Stage I.
pub const RESOLVED_CONFIG: &str = "run.resolved.toml";

/// Runs the pipeline on backend `B` (the model's forward runs on its inner backend in
/// Stage I), computing in `dtype`. The models' `config.json` are checked against the
/// configuration (hookpoint, rank) before any stage starts.
pub fn run_pipeline<B: AutodiffBackend>(
    pipeline: &Pipeline,
    device: &B::Device,
    dtype: DType,
    on_event: &mut dyn FnMut(PipelineEvent<'_>),
) -> Result<PipelineReport> {
    let cfg = pipeline.file();
    let source_dir = hub::resolve_model(&cfg.source.model)?;
    let target_dir = hub::resolve_model(&cfg.target.model)?;
    let target = cfg.validate_against_models("run configuration", &source_dir, &target_dir)?;
    // One Stage II step must fit before Stage I spends its hours.
    if let Some(target) = &target {
        let estimate = pipeline.check_memory(target, dtype, "run configuration")?;
        tracing::info!(%estimate, "one Stage II step");
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    // The resolved configuration (every default filled in) beside what it makes.
    let resolved = toml::to_string(cfg).map_err(|e| Error::Serialize {
        what: "the run configuration".into(),
        format: "TOML",
        message: e.to_string(),
    })?;
    resa_publish::write_atomic(cfg.out.join(RESOLVED_CONFIG), resolved.as_bytes())?;
    // Metrics mirrored to TensorBoard while the stages run (and once more at the end).
    let _tensorboard = match &cfg.tensorboard {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            Some(crate::tensorboard::Mirror::new(&cfg.out, dir).spawn())
        }
        None => None,
    };

    // Stage I (none for a pretrained SAE).
    let hookpoint = pipeline.hookpoint();
    let hookpoints = vec![hookpoint];
    let (sae_dir, stage1_ran) = match pipeline.sae() {
        SaeSource::Pretrained { path } => (sae_folder(path, hookpoint)?, false),
        SaeSource::Scratch { .. } | SaeSource::Finetune { .. } => {
            let stage = SaeTraining { pipeline, hookpoints: hookpoints.clone(), source_dir: source_dir.clone() };
            let (dir, ran) = run_stage::<B, _>(&stage, device, dtype, on_event)?;
            (dir.join(hookpoint.to_string()), ran)
        }
    };
    // Stage II (or the SFT baseline).
    let stage2 = AdapterTraining {
        pipeline,
        sae_dir: sae_dir.clone(),
        sae_stamp: Stage1Stamp::new(cfg, &hookpoints),
        target_dir: target_dir.clone(),
    };
    let (adapter, stage2_ran) = run_stage::<B, _>(&stage2, device, dtype, on_event)?;
    // The merged model.
    let merged = if pipeline.merge() {
        let merge =
            Merge { pipeline, target_dir, adapter: adapter.adapter.clone(), adapter_stamp: stage2.stage2_stamp() };
        Some(run_stage::<B, _>(&merge, device, dtype, on_event)?.0)
    } else {
        None
    };
    let report = PipelineReport {
        sae: sae_dir,
        stage1_ran,
        adapter: adapter.adapter,
        stage2_ran,
        stage2_loss: adapter.loss,
        merged,
    };
    Ok(report)
}
