//! Stage I of SAE-Tuning: train sparse coders on a source model's hookpoint activations.
//!
//! Activations are produced batch by batch (no gradient, no KV cache, the forward stops
//! after the deepest hooked layer) and consumed at once, never stored whole; one forward
//! feeds the SAEs of every hookpoint. Checkpoints every `save_every` steps hold, in
//! sparsify's layout, one SAE folder per hookpoint, plus the training state to resume
//! from; metrics go to `metrics.jsonl`, and a callback sees every step.
//!
//! Output folder:
//! ```text
//! OUT/layers.12/{cfg.json, sae.safetensors}      the SAE (sparsify format), newest checkpoint's
//! OUT/checkpoints/step-N/                        one complete checkpoint:
//!     layers.12/{cfg.json, sae.safetensors}       its SAEs,
//!     state/layers.12/train_state.{json,safetensors}  the training state,
//!     stage1.json                                 step, options, data position (written last)
//! OUT/metrics.jsonl                              one line per hookpoint and step
//! ```
//!
//! A checkpoint is assembled in `checkpoints/.step-N.tmp` and published by one rename, so a
//! visible `step-N` is always complete; older ones are removed after, and the SAE folders
//! at the top are refreshed from it (and again when a run resumes, so an interruption while
//! they were being replaced costs nothing). Resuming picks the newest checkpoint and says
//! which; temporaries a killed run left are removed at the next start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData, backend::AutodiffBackend};
use resa_publish::{remove_stale_temporaries, replace_dir, temp_sibling, write_atomic};
use resa_qwen2::{ForwardInput, Hookpoint, Hooks, Logits, Qwen2ForCausalLM};
use serde::{Deserialize, Serialize};

use crate::coder::SparseCoder;
use crate::config::SaeConfig;
use crate::error::{Error, Result};
use crate::train::{SaeTrainer, StepMetrics, TrainConfig};

/// Where the SAEs start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SaeInit {
    /// Fresh SAEs (sparsify's initialisation).
    Scratch {
        /// Number of latents; `None` uses `expansion_factor × d_in`.
        num_latents: Option<usize>,
        /// Used when `num_latents` is `None`.
        expansion_factor: usize,
        /// Active latents per token.
        k: usize,
        /// Initialisation seed.
        seed: u64,
    },
    /// Fine-tune loaded SAEs: a folder holding one sparsify SAE folder per hookpoint (or,
    /// for a single hookpoint, an SAE folder itself), or with the `hub` feature a hub
    /// repository of such folders (`EleutherAI/sae-DeepSeek-R1-Distill-Qwen-1.5B-65k`).
    /// `b_dec` is kept.
    Finetune(PathBuf),
}

impl SaeInit {
    /// The reference's latents (`EleutherAI/sae-DeepSeek-R1-Distill-Qwen-1.5B-65k`).
    pub const DEFAULT_LATENTS: usize = 65536;
    /// sparsify's expansion factor (used when the latents are not given).
    pub const DEFAULT_EXPANSION_FACTOR: usize = 64;
    /// sparsify's and the reference's active latents.
    pub const DEFAULT_K: usize = 32;
}

impl Default for SaeInit {
    fn default() -> Self {
        SaeInit::Scratch {
            num_latents: Some(Self::DEFAULT_LATENTS),
            expansion_factor: Self::DEFAULT_EXPANSION_FACTOR,
            k: Self::DEFAULT_K,
            seed: 0,
        }
    }
}

/// Options of a Stage I run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage1Options {
    /// Hookpoints to train an SAE on (one forward feeds all).
    pub hookpoints: Vec<Hookpoint>,
    /// Starting point of the SAEs.
    pub init: SaeInit,
    /// Training options.
    pub train: TrainConfig,
    /// Sequences (chunks) per step (sparsify's `batch_size`; the reference uses 16).
    pub batch_size: usize,
    /// Checkpoint every this many steps (and at the end).
    pub save_every: u64,
    /// Stop after this many steps (default: one epoch over the chunks).
    pub max_steps: Option<u64>,
    /// Output folder.
    pub out: PathBuf,
    /// Continue from the checkpoint in `out` when there is one.
    pub resume: bool,
}

impl Default for Stage1Options {
    fn default() -> Self {
        Stage1Options {
            hookpoints: vec![Hookpoint::Residual(12)],
            init: SaeInit::default(),
            train: TrainConfig::default(),
            batch_size: 16,
            save_every: 1000,
            max_steps: None,
            out: PathBuf::from("sae-out"),
            resume: false,
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct Stage1Report {
    /// Steps taken in total (including those before a resume).
    pub steps: u64,
    /// Tokens seen by each SAE in this invocation.
    pub tokens: u64,
    /// Metrics of the last step, per hookpoint.
    pub last: Vec<(String, StepMetrics)>,
    /// Mean throughput of this invocation (tokens per second, model forward included).
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: u64,
    hookpoints: Vec<String>,
    batch_size: usize,
    seq_len: usize,
    options: Stage1Options,
}

#[derive(Serialize)]
struct MetricsLine<'a> {
    step: u64,
    hookpoint: &'a str,
    fvu: f32,
    auxk_loss: f32,
    multi_topk_fvu: f32,
    dead_fraction: f32,
    tokens: usize,
    tokens_per_second: f64,
    lr: f64,
}

const MANIFEST: &str = "stage1.json";

/// The complete Stage I checkpoints in `out` (`checkpoints/step-N/` holding the manifest
/// `stage1.json`), oldest first.
pub fn stage1_checkpoints(out: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else { return Vec::new() };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let step = e.file_name().to_str()?.strip_prefix("step-")?.parse().ok()?;
            let dir = e.path();
            dir.join(MANIFEST).is_file().then_some((step, dir))
        })
        .collect();
    found.sort();
    found
}

/// Copies a checkpoint's SAE folder to `dst` (assembled beside it, then moved into place).
fn publish_sae(src: &Path, dst: &Path) -> Result<()> {
    let tmp = temp_sibling(dst, "tmp")?;
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for file in [crate::coder::CFG_FILE, crate::coder::WEIGHTS_FILE, resa_publish::manifest::MANIFEST] {
        let bytes = std::fs::read(src.join(file)).map_err(|e| Error::io(src.join(file), e))?;
        write_atomic(tmp.join(file), &bytes)?;
    }
    // What was copied is what the checkpoint's manifest says.
    resa_publish::manifest::verify(&tmp)?;
    Ok(replace_dir(&tmp, dst)?)
}

/// Where a run is, reported after every step to [`train_saes_with`]'s callback.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Steps done (including those before a resume).
    pub step: u64,
    /// Steps the run will take.
    pub total: u64,
    /// This step's metrics per hookpoint.
    pub metrics: &'a [(String, StepMetrics)],
    /// Throughput of this step, model forward included.
    pub tokens_per_second: f64,
}

/// Trains one SAE per hookpoint on the activations of `model` over `chunks` (each a
/// sequence of token ids of equal length, e.g. from [`resa_data::chunk_texts`]), in order.
pub fn train_saes<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B::InnerBackend>,
    chunks: &[Vec<u32>],
    options: &Stage1Options,
) -> Result<Stage1Report> {
    train_saes_with::<B>(model, chunks, options, &mut |_| {})
}

/// Checks Stage I's options and data before any work; returns the checked hookpoints, their
/// names, the chunk length and the steps to take.
fn check_stage1(
    options: &Stage1Options,
    chunks: &[Vec<u32>],
    cfg: &resa_qwen2::Qwen2Config,
) -> Result<(Vec<resa_qwen2::CheckedHookpoint>, Vec<String>, usize, u64)> {
    if options.hookpoints.is_empty() {
        return Err(Error::option("hookpoints", "name at least one hookpoint"));
    }
    let checked =
        options.hookpoints.iter().map(|hp| hp.within(cfg.num_hidden_layers)).collect::<resa_qwen2::Result<Vec<_>>>()?;
    let names: Vec<String> = options.hookpoints.iter().map(ToString::to_string).collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    if distinct.len() != names.len() {
        return Err(Error::option("hookpoints", "a hookpoint is named twice"));
    }
    if options.batch_size == 0 {
        return Err(Error::option("batch_size", "must be positive"));
    }
    if options.save_every == 0 {
        return Err(Error::option("save_every", "must be positive"));
    }
    let seq_len = chunks.first().map(Vec::len).unwrap_or(0);
    if seq_len == 0 {
        return Err(Error::option("data", "no chunks to train on"));
    }
    if let Some((i, c)) = chunks.iter().enumerate().find(|(_, c)| c.len() != seq_len) {
        return Err(Error::Chunk { chunk: i, message: format!("{} tokens, chunk 0 has {seq_len}", c.len()) });
    }
    let outside =
        chunks.iter().enumerate().find_map(|(i, c)| c.iter().find(|&&t| t as usize >= cfg.vocab_size).map(|&t| (i, t)));
    if let Some((chunk, bad)) = outside {
        let message = format!("token id {bad} is outside the model's vocabulary ({} ids)", cfg.vocab_size);
        return Err(Error::Chunk { chunk, message });
    }
    let epoch_steps = (chunks.len() / options.batch_size) as u64;
    let total = options.max_steps.map_or(epoch_steps, |m| m.min(epoch_steps));
    if total == 0 {
        return Err(Error::option(
            "batch_size",
            format!("{} chunks do not fill one batch of {}", chunks.len(), options.batch_size),
        ));
    }
    Ok((checked, names, seq_len, total))
}

/// One trainer per hookpoint, each with a fresh SAE or the one it fine-tunes.
fn new_trainers<B: AutodiffBackend>(
    options: &Stage1Options,
    names: &[String],
    train_cfg: &TrainConfig,
    d_model: usize,
    device: &burn::tensor::Device<B::InnerBackend>,
) -> Result<Vec<SaeTrainer<B>>> {
    let mut trainers = Vec::with_capacity(names.len());
    for name in names {
        let sae = match &options.init {
            SaeInit::Scratch { num_latents, expansion_factor, k, seed } => {
                let mut c = SaeConfig::new(d_model, num_latents.unwrap_or(0), *k);
                c.expansion_factor = *expansion_factor;
                // sparsify seeds each SAE identically; distinct hookpoints still get equal
                // starting points, as there.
                SparseCoder::random(c, *seed, device)?
            }
            SaeInit::Finetune(dir) => {
                let src = crate::coder::sae_folder(dir, name, names.len() == 1)?;
                SparseCoder::load(&src, device)?
            }
        };
        sae.check_width(d_model)?;
        trainers.push(SaeTrainer::<B>::new(sae, train_cfg.clone())?);
    }

    Ok(trainers)
}

/// Prepares `options.out` and, with `resume`, loads the newest intact checkpoint into the
/// trainers; returns the step to start from (0 for a fresh run, whose older checkpoints go).
fn resume_stage1<B: AutodiffBackend>(
    options: &Stage1Options,
    names: &[String],
    seq_len: usize,
    trainers: &mut [SaeTrainer<B>],
) -> Result<u64> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let checkpoints = out.join("checkpoints");
    for dir in [out, &checkpoints] {
        remove_stale_temporaries(dir)?;
    }
    let mut start = 0u64;
    // The newest checkpoint whose files match its manifest (a damaged one is passed over,
    // and said so).
    let newest = if options.resume { resa_publish::manifest::newest_intact(stage1_checkpoints(out)) } else { None };
    if let Some((_, dir)) = newest {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: RunState =
            serde_json::from_str(&text).map_err(|e| Error::Resume { path: path.clone(), message: e.to_string() })?;
        if state.hookpoints != names || state.batch_size != options.batch_size || state.seq_len != seq_len {
            return Err(Error::Resume {
                path,
                message: format!(
                    "the checkpoint trained {:?} with batch {} × {} tokens; this run asks for {:?} with batch {} × {}",
                    state.hookpoints, state.batch_size, state.seq_len, names, options.batch_size, seq_len
                ),
            });
        }
        for (name, t) in names.iter().zip(trainers.iter_mut()) {
            t.load_state(dir.join("state").join(name))?;
            if t.step_count() != state.step {
                return Err(Error::Resume {
                    path: dir.join("state").join(name),
                    message: format!(
                        "holds step {}, {MANIFEST} says {} (the checkpoint is damaged: remove {} to resume from the \
                         one before, or run without --resume)",
                        t.step_count(),
                        state.step,
                        dir.display()
                    ),
                });
            }
            // The top-level SAE folders may be older (an interruption while they were
            // being replaced): they are refreshed from the checkpoint resumed from.
            publish_sae(&dir.join(name), &out.join(name))?;
        }
        start = state.step;
        tracing::info!(step = start, "resuming Stage I from {}", dir.display());
    } else {
        if out.join(MANIFEST).is_file() {
            // An older resa's checkpoint (state/ and stage1.json written one after the other):
            // it cannot be trusted to be consistent, so the run starts over.
            tracing::warn!(
                "{}: a Stage I checkpoint of an older resa, whose parts were not published together; \
                 not resumed (starting from step 0)",
                out.display()
            );
            std::fs::remove_file(out.join(MANIFEST)).map_err(|e| Error::io(out.join(MANIFEST), e))?;
            let state = out.join("state");
            if state.is_dir() {
                std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
            }
        }
        if options.resume {
            tracing::info!("no checkpoint in {}; starting from step 0", checkpoints.display());
        }
        // A fresh run: checkpoints of an earlier run in this folder must not be resumed later.
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).map_err(|e| Error::io(&checkpoints, e))?;
        }
    }

    Ok(start)
}

/// Publishes checkpoint `step` (every SAE and trainer state, then the run state and the
/// manifest), removes the older ones and refreshes the top-level SAE folders from it.
fn save_stage1<B: AutodiffBackend>(
    options: &Stage1Options,
    names: &[String],
    seq_len: usize,
    trainers: &[SaeTrainer<B>],
    step: u64,
) -> Result<()> {
    let out = &options.out;
    let checkpoints = out.join("checkpoints");
    let dir = checkpoints.join(format!("step-{step}"));
    let tmp = temp_sibling(&dir, "tmp")?;
    for (name, t) in names.iter().zip(trainers) {
        t.to_sae().save(tmp.join(name))?;
        t.save_state(tmp.join("state").join(name))?;
    }
    let state = RunState {
        step,
        hookpoints: names.to_vec(),
        batch_size: options.batch_size,
        seq_len,
        options: options.clone(),
    };
    let json = serde_json::to_string_pretty(&state)
        .map_err(|e| Error::Json { what: "the Stage I checkpoint state", cause: e.to_string() })?;
    // The manifest last: a folder without it is not a checkpoint.
    write_atomic(tmp.join(MANIFEST), json.as_bytes())?;
    resa_publish::manifest::write_manifest(&tmp)?;
    replace_dir(&tmp, &dir)?;
    for (s, older) in stage1_checkpoints(out) {
        if s != step {
            std::fs::remove_dir_all(&older).map_err(|e| Error::io(&older, e))?;
        }
    }
    for name in names {
        publish_sae(&dir.join(name), &out.join(name))?;
    }
    Ok(())
}

/// [`train_saes`] calling `on_step` after every step (progress display, early stopping
/// extra logging).
pub fn train_saes_with<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B::InnerBackend>,
    chunks: &[Vec<u32>],
    options: &Stage1Options,
    on_step: &mut dyn FnMut(Progress<'_>),
) -> Result<Stage1Report> {
    let cfg = model.config();
    let (checked, names, seq_len, total) = check_stage1(options, chunks, cfg)?;
    let device = model.device();
    let d_model = cfg.hidden_size;
    let mut train_cfg = options.train.clone();
    train_cfg.finetune = matches!(options.init, SaeInit::Finetune(_));
    if train_cfg.total_steps == 0 {
        train_cfg.total_steps = total;
    }

    let mut trainers = new_trainers::<B>(options, &names, &train_cfg, d_model, &device)?;

    let out = &options.out;
    let start = resume_stage1(options, &names, seq_len, &mut trainers)?;

    // The metrics of the steps this run does (again) go; every step is in the file once.
    let metrics_path = out.join("metrics.jsonl");
    let kept: String = std::fs::read_to_string(&metrics_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            start > 0
                && serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                    .is_some_and(|s| s < start)
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    write_atomic(&metrics_path, kept.as_bytes())?;
    let mut metrics =
        std::fs::OpenOptions::new().append(true).open(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    let hooks = Hooks::capture(checked.iter().copied());
    let began = Instant::now();
    let mut tokens = 0u64;
    let mut last = Vec::new();
    let save = |trainers: &[SaeTrainer<B>], step: u64| save_stage1(options, &names, seq_len, trainers, step);

    for step in start..total {
        let t0 = Instant::now();
        let lo = step as usize * options.batch_size;
        let batch = &chunks[lo..lo + options.batch_size];
        let ids: Vec<i64> = batch.iter().flatten().map(|&t| i64::from(t)).collect();
        let input =
            Tensor::<B::InnerBackend, 2, Int>::from_data(TensorData::new(ids, [options.batch_size, seq_len]), &device);
        let fwd = model.forward(ForwardInput::new(input).with_logits(Logits::None), &hooks, None)?;
        last.clear();
        let n = options.batch_size * seq_len;
        for ((name, hp), t) in names.iter().zip(&options.hookpoints).zip(trainers.iter_mut()) {
            let acts = fwd
                .activation(*hp)
                .ok_or_else(|| Error::Internal(format!("the forward did not capture {name}")))?
                .clone()
                .reshape([n, d_model]);
            let m = t.step(acts).map_err(|e| match e {
                Error::NonFiniteLoss { step, value, .. } => {
                    Error::NonFiniteLoss { step, hookpoint: name.clone(), value }
                }
                other => other,
            })?;
            last.push((name.clone(), m));
        }
        tokens += n as u64;
        let secs = t0.elapsed().as_secs_f64();
        for (name, m) in &last {
            let line = MetricsLine {
                step,
                hookpoint: name,
                fvu: m.fvu,
                auxk_loss: m.auxk_loss,
                multi_topk_fvu: m.multi_topk_fvu,
                dead_fraction: m.dead_fraction,
                tokens: m.tokens,
                tokens_per_second: n as f64 / secs,
                lr: trainers[0].lr(),
            };
            let mut text = serde_json::to_string(&line)
                .map_err(|e| Error::Json { what: "a Stage I metrics line", cause: e.to_string() })?;
            text.push('\n');
            metrics.write_all(text.as_bytes()).map_err(|e| Error::io(&metrics_path, e))?;
        }
        on_step(Progress { step: step + 1, total, metrics: &last, tokens_per_second: n as f64 / secs });
        if (step + 1) % options.save_every == 0 && step + 1 < total {
            save(&trainers, step + 1)?;
        }
    }
    if start < total {
        save(&trainers, total)?;
    }
    let secs = began.elapsed().as_secs_f64().max(1e-9);
    Ok(Stage1Report { steps: total, tokens, last, tokens_per_second: tokens as f64 / secs })
}
