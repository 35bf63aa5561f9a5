//! Stages as values: each has its configuration, a stamp (what makes its output reusable)
//! and a `run` that writes its artifacts atomically; [`run_stage`] skips a stage whose
//! stamp file matches and whose output is on disk, starts over when the folder was made
//! from another stamp, and writes the stamp after a run.
//! [`run_pipeline`](crate::run_pipeline), the paper's experiments and the demo are
//! compositions of these stages.

use std::path::PathBuf;

use burn::tensor::{DType, backend::AutodiffBackend};
use resa_publish::write_atomic;
use resa_qwen2::Hookpoint;
use resa_sae::{SparseCoder, train_saes_with};
use resa_tune::{Objective, SaeTuning, Sft, train_adapters};

use crate::data::prepare_chunks;
use crate::error::{Error, Result};
use crate::pipeline::{ObjectiveKind, Pipeline, PipelineEvent};
use crate::stamp::{MergeStamp, STAMP_VERSION, Stage1Stamp, Stage2Stamp, to_json};

/// One stage of a run on backend `B`.
pub trait Stage<B: AutodiffBackend> {
    /// What the stage hands to the next (a folder, a report).
    type Output;

    /// Its name in events and messages (`stage I`).
    fn name(&self) -> &'static str;

    /// The file that holds the stamp of the finished output.
    fn stamp_file(&self) -> PathBuf;

    /// The folder the stage writes its output and partial work (checkpoints) into. It is
    /// removed before a run whose stamp differs from the one its contents were started or
    /// finished with, so a changed configuration never resumes the old one's checkpoints.
    fn work_dir(&self) -> PathBuf;

    /// What makes the output reusable: a rerun with the same stamp is skipped.
    fn stamp(&self) -> Result<String>;

    /// The output of a finished run as found on disk, or `None` when it is incomplete
    /// (then the stage runs again even though the stamp matches).
    fn finished(&self) -> Option<Self::Output>;

    /// Does the work on `device` in `dtype`, writing every artifact atomically.
    fn run(
        &self,
        device: &B::Device,
        dtype: DType,
        on_event: &mut dyn FnMut(PipelineEvent<'_>),
    ) -> Result<Self::Output>;
}

/// Runs `stage` unless its output is up to date (then [`PipelineEvent::Skipped`] is sent);
/// writes its stamp after a run. Returns the output and whether the stage ran.
pub fn run_stage<B: AutodiffBackend, S: Stage<B>>(
    stage: &S,
    device: &B::Device,
    dtype: DType,
    on_event: &mut dyn FnMut(PipelineEvent<'_>),
) -> Result<(S::Output, bool)> {
    let stamp = stage.stamp()?;
    let file = stage.stamp_file();
    let done = std::fs::read_to_string(&file).ok();
    if done.as_deref() == Some(stamp.as_str())
        && let Some(out) = stage.finished()
    {
        on_event(PipelineEvent::Skipped(stage.name()));
        return Ok((out, false));
    }
    // What the folder holds was made (or started) from another configuration: start over
    // instead of resuming its checkpoints. Without a stamp (a killed run from before stamps
    // were written at the start) the checkpoints are resumed, as before.
    let started = started_file(&file);
    let previous = done.or_else(|| std::fs::read_to_string(&started).ok());
    let work = stage.work_dir();
    if previous.is_some_and(|p| p != stamp) && work.exists() {
        tracing::info!("{}: {} was made from another configuration; starting over", stage.name(), work.display());
        std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    }
    for f in [&file, &started] {
        if let Some(dir) = f.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let _ = std::fs::remove_file(&file);
    write_atomic(&started, stamp.as_bytes())?;
    let out = stage.run(device, dtype, on_event)?;
    write_atomic(&file, stamp.as_bytes())?;
    let _ = std::fs::remove_file(&started);
    Ok((out, true))
}

/// Where a stage's stamp is kept while it runs: beside its done-stamp.
fn started_file(done: &std::path::Path) -> PathBuf {
    let name = done.file_name().map_or_else(|| "stage".into(), |n| n.to_string_lossy().into_owned());
    done.with_file_name(format!("{name}.started"))
}

/// Stage I: trains (mode `scratch`) or fine-tunes (mode `finetune`) one SAE per hookpoint
/// on the source model, all from one activation pass over the trigger data, into
/// `out/stage1/<hookpoint>/` (sparsify's layout). Output: the `stage1` folder.
pub struct SaeTraining<'a> {
    /// The run (source model, trigger data, `[sae]`).
    pub pipeline: &'a Pipeline,
    /// Hookpoints to train an SAE for (checked against the source model before).
    pub hookpoints: Vec<Hookpoint>,
    /// The resolved folder of the source model.
    pub source_dir: PathBuf,
}

impl<B: AutodiffBackend> Stage<B> for SaeTraining<'_> {
    type Output = PathBuf;

    fn name(&self) -> &'static str {
        "stage I"
    }

    fn stamp_file(&self) -> PathBuf {
        self.pipeline.out().join("stage1/done.json")
    }

    fn work_dir(&self) -> PathBuf {
        self.pipeline.out().join("stage1")
    }

    fn stamp(&self) -> Result<String> {
        to_json(&Stage1Stamp::new(self.pipeline.file(), &self.hookpoints), "the Stage I stamp")
    }

    fn finished(&self) -> Option<PathBuf> {
        let dir = self.pipeline.out().join("stage1");
        self.hookpoints.iter().all(|h| dir.join(h.to_string()).join("cfg.json").is_file()).then_some(dir)
    }

    fn run(&self, device: &B::Device, dtype: DType, on_event: &mut dyn FnMut(PipelineEvent<'_>)) -> Result<PathBuf> {
        let p = self.pipeline;
        let options = p.stage1_options(&self.hookpoints).ok_or_else(|| Error::Invalid {
            file: "run configuration".into(),
            table: "sae",
            key: "mode",
            value: "\"pretrained\"".into(),
            allowed: "\"scratch\" or \"finetune\" for Stage I (a pretrained SAE has no Stage I to run)".into(),
        })?;
        let source = p.source().load::<B::InnerBackend>(&self.source_dir, device, dtype)?;
        let chunks = prepare_chunks(p.data(), &p.data().trigger, &self.source_dir)?;
        train_saes_with::<B>(&source, &chunks, &options, &mut |s| {
            let fvu = s.metrics.iter().map(|(_, m)| m.fvu).sum::<f32>() / s.metrics.len().max(1) as f32;
            on_event(PipelineEvent::Stage1 { step: s.step, total: s.total, fvu });
        })?;
        Ok(options.out)
    }
}

/// What Stage II produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterOutput {
    /// The PEFT adapter folder (`out/stage2/adapter`).
    pub adapter: PathBuf,
    /// First and last loss of this invocation (`None` when skipped).
    pub loss: Option<(f32, f32)>,
}

/// Stage II (or the CoT-free SFT baseline, by `[stage2] objective`): LoRA adapters on the
/// target model trained towards the objective on the elicitation data, checkpointed and
/// resumable, into `out/stage2/`.
pub struct AdapterTraining<'a> {
    /// The run (target model, elicitation data, `[lora]`, `[stage2]`).
    pub pipeline: &'a Pipeline,
    /// The SAE spliced in (a sparsify folder).
    pub sae_dir: PathBuf,
    /// Stage I's stamp: a new SAE makes a new adapter.
    pub sae_stamp: Stage1Stamp,
    /// The resolved folder of the target model.
    pub target_dir: PathBuf,
}

impl AdapterTraining<'_> {
    /// What the adapter is made from: the SAE's stamp, this run's Stage II values and its
    /// node count.
    pub fn stage2_stamp(&self) -> Stage2Stamp {
        let nodes = self.pipeline.tune().nodes.as_ref().map_or(1, |n| n.count);
        Stage2Stamp::new(self.pipeline.file(), self.sae_stamp.clone(), nodes)
    }
}

impl<B: AutodiffBackend> Stage<B> for AdapterTraining<'_> {
    type Output = AdapterOutput;

    fn name(&self) -> &'static str {
        "stage II"
    }

    fn stamp_file(&self) -> PathBuf {
        self.pipeline.out().join("stage2/done.json")
    }

    fn work_dir(&self) -> PathBuf {
        self.pipeline.out().join("stage2")
    }

    fn stamp(&self) -> Result<String> {
        to_json(&self.stage2_stamp(), "the Stage II stamp")
    }

    fn finished(&self) -> Option<AdapterOutput> {
        let adapter = self.pipeline.out().join("stage2/adapter");
        adapter.is_dir().then_some(AdapterOutput { adapter, loss: None })
    }

    fn run(
        &self,
        device: &B::Device,
        dtype: DType,
        on_event: &mut dyn FnMut(PipelineEvent<'_>),
    ) -> Result<AdapterOutput> {
        let p = self.pipeline;
        let mut model = p.target().load::<B>(&self.target_dir, device, dtype)?;
        let lora = p.lora();
        resa_lora::attach(&mut model, lora, p.tune().seed)?;
        let model = resa_lora::trainable(model);
        let sae = SparseCoder::<B>::load(&self.sae_dir, device)?;
        let at = p.hookpoint().within(model.config().num_hidden_layers)?;
        let sae_tuning = SaeTuning::new(&sae, at, p.sae_grad()).with_recompute(p.recompute());
        let objective: &dyn Objective<B> = match p.objective() {
            ObjectiveKind::SaeTuning => &sae_tuning,
            ObjectiveKind::Sft => &Sft,
        };
        let chunks = prepare_chunks(p.data(), &p.data().elicitation, &self.target_dir)?;
        let (_, report) = train_adapters(model, lora, objective, &chunks, p.tune(), &mut |m| {
            on_event(PipelineEvent::Stage2(m));
            true
        })?;
        Ok(AdapterOutput { adapter: report.adapter, loss: report.first_loss.zip(report.last_loss) })
    }
}

/// The adapter merged into the target model, written as a Hugging Face checkpoint in the
/// target's stored dtype (with its tokenizer files) into `out/merged/`; its stamp lives
/// beside it (`merged.done.json`), so the checkpoint folder holds only the checkpoint.
pub struct Merge<'a> {
    /// The run.
    pub pipeline: &'a Pipeline,
    /// The resolved folder of the target model.
    pub target_dir: PathBuf,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// Stage II's stamp: a new adapter makes a new merged model.
    pub adapter_stamp: Stage2Stamp,
}

impl<B: AutodiffBackend> Stage<B> for Merge<'_> {
    type Output = PathBuf;

    fn name(&self) -> &'static str {
        "merge"
    }

    fn stamp_file(&self) -> PathBuf {
        self.pipeline.out().join("merged.done.json")
    }

    fn work_dir(&self) -> PathBuf {
        self.pipeline.out().join("merged")
    }

    fn stamp(&self) -> Result<String> {
        to_json(&MergeStamp { version: STAMP_VERSION, adapter: self.adapter_stamp.clone() }, "the merge stamp")
    }

    fn finished(&self) -> Option<PathBuf> {
        let merged = self.pipeline.out().join("merged");
        merged.join("config.json").is_file().then_some(merged)
    }

    fn run(&self, device: &B::Device, _dtype: DType, _on_event: &mut dyn FnMut(PipelineEvent<'_>)) -> Result<PathBuf> {
        let merged = self.pipeline.out().join("merged");
        // The merge is one f32 product per adapted layer, whatever dtype Stage II ran in.
        let mut model = self.pipeline.target().load::<B::InnerBackend>(&self.target_dir, device, DType::F32)?;
        resa_lora::load_adapter(&mut model, &self.adapter)?;
        resa_lora::save_merged(model, &merged, resa_lora::base_dtype(&self.target_dir), Some(&self.target_dir))?;
        Ok(merged)
    }
}
