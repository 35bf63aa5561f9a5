//! The training loop shared by Stage II (KL against the unmodified model, SAE spliced) and
//! the CoT-free SFT baseline (cross-entropy): LoRA parameters only, AdamW with PyTorch's
//! semantics, global gradient-norm clipping, constant or cosine learning rate, gradient
//! accumulation, checkpoints as PEFT adapter folders with optimizer state, exact resume.
//!
//! Run folder:
//! ```text
//! OUT/run.json                 the full configuration of the run
//! OUT/metrics.jsonl            one line per optimizer step
//! OUT/checkpoint-STEP/         adapter_config.json, adapter_model.safetensors,
//!                              optimizer.safetensors, trainer_state.json
//! OUT/adapter/                 the final adapter (PEFT folder)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend, Device, DeviceId};
use burn::tensor::{DType, Int, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use resa_lora::LoraConfig;
use resa_publish::{replace_dir, temp_sibling, write_atomic};
use resa_qwen2::safetensors_io::{OwnedTensor, SafetensorsReader, StoredDtype, write_safetensors};
use resa_qwen2::{AdapterMode, Qwen2ForCausalLM};
use serde::{Deserialize, Serialize};

use crate::adamw::{AdamW, Moments};
#[cfg(feature = "collective")]
use crate::collective::Collective;
use crate::error::{Error, NodeLoss, Result};
use crate::nodes::Nodes;
use crate::objective::Objective;

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The reference's: constant.
    Constant,
    /// Linear warm-up, then cosine decay to `min_lr_ratio × lr` (transformers' `cosine_with_min_lr`).
    Cosine {
        /// Warm-up steps.
        warmup_steps: u64,
        /// Floor as a fraction of the peak rate.
        min_lr_ratio: f64,
    },
}

impl LrSchedule {
    /// The rate at step `step` (0-based) of `total` for peak rate `lr`.
    pub fn lr_at(self, lr: f64, step: u64, total: u64) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { warmup_steps, min_lr_ratio } => {
                if step < warmup_steps {
                    return lr * step as f64 / warmup_steps.max(1) as f64;
                }
                let progress = (step - warmup_steps) as f64 / total.saturating_sub(warmup_steps).max(1) as f64;
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
                lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cos)
            }
        }
    }
}

/// Options of a training run (the reference's Stage II defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneConfig {
    /// Peak learning rate (reference: 1e-6).
    pub lr: f64,
    /// Schedule (reference: constant).
    pub schedule: LrSchedule,
    /// AdamW's β₁, β₂, ε and decoupled weight decay (reference: PyTorch's defaults, weight
    /// decay 0.01), written as fields of this table.
    #[serde(flatten)]
    pub adamw: AdamW,
    /// Global gradient-norm clip over all trainable tensors (reference: 1.0; 0 turns it off).
    pub max_grad_norm: f64,
    /// Epochs over the chunks (reference: 2).
    pub epochs: usize,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<u64>,
    /// Chunks per micro-batch (reference: 1 per device).
    pub batch_size: usize,
    /// Micro-batches per optimizer step and replica.
    pub grad_accum: usize,
    /// Data-parallel replicas (1: one device). Replica `i` runs on the device whose index is
    /// the model's plus `i` (`cuda:0` → `cuda:0 … cuda:N-1`); on a CPU backend all replicas
    /// share the one device. An optimizer step takes `batch_size × grad_accum × data_parallel`
    /// chunks, as PyTorch DDP does with `per_device_batch × accumulation × world size`.
    #[serde(default = "one")]
    pub data_parallel: usize,
    /// Several processes training together (one per machine, each with `data_parallel`
    /// replicas; see [`Nodes`]): a step then takes `batch_size × grad_accum × data_parallel ×
    /// nodes.count` chunks and the gradients are summed over all of them. `None`: this process
    /// alone.
    #[serde(default)]
    pub nodes: Option<Nodes>,
    /// Seed of the data order (reshuffled each epoch) and of dropout.
    pub seed: u64,
    /// Checkpoint every this many optimizer steps (reference: 500).
    pub save_every: u64,
    /// Run folder.
    pub out: PathBuf,
    /// Continue from the latest checkpoint in `out`.
    pub resume: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            lr: 1e-6,
            schedule: LrSchedule::Constant,
            adamw: AdamW::default(),
            max_grad_norm: 1.0,
            epochs: 2,
            max_steps: None,
            batch_size: 1,
            grad_accum: 1,
            data_parallel: 1,
            nodes: None,
            seed: 42,
            save_every: 500,
            out: PathBuf::from("tune-out"),
            resume: false,
        }
    }
}

impl TuneConfig {
    /// The learning rate at optimizer step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        self.schedule.lr_at(self.lr, step, total)
    }

    fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::option("lr", format!("must be positive, got {}", self.lr)));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.epochs == 0 || self.data_parallel == 0 {
            return Err(Error::option("batch_size/grad_accum/epochs/data_parallel", "must be positive"));
        }
        if self.save_every == 0 {
            return Err(Error::option("save_every", "must be positive"));
        }
        if let Some(n) = &self.nodes {
            n.validate()?;
            if cfg!(not(feature = "collective")) && n.count > 1 {
                return Err(Error::option(
                    "nodes",
                    "a run of several nodes needs resa-tune's `collective` feature (the `resa` program has it)",
                ));
            }
        }
        Ok(())
    }

    /// Replicas in the whole run: `data_parallel` times the node count.
    pub fn world_size(&self) -> usize {
        self.data_parallel * self.nodes.as_ref().map_or(1, |n| n.count as usize)
    }

    /// What every node of a multi-node run must agree on: this configuration without what
    /// differs between nodes (rank, address, run folder, resume), as a 32-bit FNV-1a hash of
    /// its JSON.
    fn fingerprint(&self) -> u32 {
        let mut same = self.clone();
        same.out = PathBuf::new();
        same.resume = false;
        if let Some(n) = &mut same.nodes {
            n.rank = 0;
            n.address.clear();
            n.timeout_secs = 0;
        }
        let json = serde_json::to_string(&same).unwrap_or_default();
        json.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    }
}

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Optimizer steps done.
    pub step: u64,
    /// Steps the run takes.
    pub total: u64,
    /// Epoch (0-based) of the step's last micro-batch.
    pub epoch: usize,
    /// Mean loss of the step's micro-batches (KL for Stage II, cross-entropy for SFT).
    pub loss: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Tokens in the step.
    pub tokens: usize,
    /// Throughput of the step.
    pub tokens_per_second: f64,
    /// What the objective measured in the step ([`Objective::step_metrics`]: GRPO's reward,
    /// KL, completion length), written as further fields of the metrics line.
    #[serde(flatten)]
    pub objective: std::collections::BTreeMap<String, f64>,
}

/// What a finished run produced.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    /// Optimizer steps in total (including before a resume).
    pub steps: u64,
    /// Loss of the first step of this invocation and of the last.
    pub first_loss: Option<f32>,
    /// Loss of the last step.
    pub last_loss: Option<f32>,
    /// The final adapter folder.
    pub adapter: PathBuf,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    total: u64,
    micro_batches: usize,
    config: TuneConfig,
}

/// Keys of the trainable matrices: PEFT module names with `.lora_A` / `.lora_B`.
fn adapter_keys<B: Backend>(model: &Qwen2ForCausalLM<B>) -> Vec<String> {
    model
        .linears()
        .into_iter()
        .filter(|(_, l)| l.adapter.is_some())
        .flat_map(|(n, _)| [format!("{n}.lora_A"), format!("{n}.lora_B")])
        .collect()
}

/// The order micro-batches are drawn in: epoch by epoch, each a seeded shuffle.
fn order(n: usize, epochs: usize, seed: u64) -> Vec<usize> {
    (0..epochs)
        .flat_map(|e| {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(seed.wrapping_add(e as u64)));
            idx
        })
        .collect()
}

/// Appends one step's metrics (best effort: the step is failing anyway).
fn record(metrics: &mut std::fs::File, m: &StepMetrics) {
    if let Ok(mut line) = serde_json::to_string(m) {
        line.push('\n');
        let _ = metrics.write_all(line.as_bytes());
    }
}

/// The complete checkpoints of a run folder (`checkpoint-STEP/` with its trainer state; each
/// is published in one rename, so present means whole), by step.
pub fn checkpoints(out: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let step: u64 = e.file_name().to_str()?.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("trainer_state.json").is_file().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Micro-batches per optimizer step (in the whole run) and optimizer steps in all, for
/// `chunks` chunks; an error when they do not fill one step.
fn step_count(cfg: &TuneConfig, chunks: usize) -> Result<(usize, u64)> {
    let world = cfg.world_size();
    let micro_per_step = cfg.grad_accum * world;
    let steps_per_epoch = ((chunks / cfg.batch_size) / micro_per_step) as u64;
    let all = steps_per_epoch * cfg.epochs as u64;
    let total = cfg.max_steps.map_or(all, |m| m.min(all));
    if total == 0 {
        return Err(Error::option(
            "batch_size",
            format!(
                "{chunks} chunks do not fill one step of {} × {} × {world} (batch × accumulation × replicas in all)",
                cfg.batch_size, cfg.grad_accum
            ),
        ));
    }
    Ok((micro_per_step, total))
}

/// Checks that the chunks are non-empty, of one length (at least 2 tokens) and inside the
/// vocabulary; returns their length.
fn check_chunks(chunks: &[Vec<u32>], vocab: usize) -> Result<usize> {
    let seq = chunks.first().map(Vec::len).unwrap_or(0);
    if seq < 2 {
        return Err(Error::option("data", "no chunks (or chunks shorter than 2 tokens) to train on"));
    }
    if let Some((i, c)) = chunks.iter().enumerate().find(|(_, c)| c.len() != seq) {
        return Err(Error::option("data", format!("chunk {i} has {} tokens, chunk 0 has {seq}", c.len())));
    }
    if let Some(bad) = chunks.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::option("data", format!("token id {bad} is outside the model's vocabulary ({vocab} ids)")));
    }
    Ok(seq)
}

/// A model with a checkpoint's adapter, and the checkpoint's AdamW moments.
type Resumed<B> = (Qwen2ForCausalLM<B>, Vec<Moments<<B as AutodiffBackend>::InnerBackend>>);

/// Loads checkpoint `dir` into `model` (its adapter) and returns the AdamW moments, after
/// checking that it belongs to a run of the same shape.
fn load_checkpoint<B: AutodiffBackend>(
    mut model: Qwen2ForCausalLM<B>,
    dir: &Path,
    keys: &[String],
    cfg: &TuneConfig,
    total: u64,
) -> Result<Resumed<B>> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).map_err(|e| Error::io(dir, e))?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| Error::Resume { path: dir.to_path_buf(), message: e.to_string() })?;
    let then = (state.config.batch_size, state.micro_batches, state.config.world_size());
    let now = (cfg.batch_size, cfg.grad_accum, cfg.world_size());
    if state.total != total || then != now {
        return Err(Error::Resume {
            path: dir.to_path_buf(),
            message: format!(
                "the checkpoint's run has {} steps of {} × {} × {} (batch × accumulation × replicas in all); this one \
                 {} of {} × {} × {}",
                state.total, then.0, then.1, then.2, total, now.0, now.1, now.2
            ),
        });
    }
    resa_lora::remove(&mut model);
    resa_lora::load_adapter(&mut model, dir)?;
    let model = resa_lora::trainable(model);
    let device = model.device();
    let reader = SafetensorsReader::open_file(dir.join("optimizer.safetensors"))?;
    let mut moments = Vec::with_capacity(keys.len());
    for key in keys {
        let (m, shape) = reader.read_f32_any(&format!("m.{key}"))?;
        let (v, _) = reader.read_f32_any(&format!("v.{key}"))?;
        let shape = [shape[0], shape[1]];
        moments.push(Moments {
            m: Tensor::from_data(TensorData::new(m, shape), &device),
            v: Tensor::from_data(TensorData::new(v, shape), &device),
        });
    }
    Ok((model, moments))
}

/// Opens `metrics.jsonl` for appending, keeping its lines up to step `step`: a resumed run
/// repeats the steps after its checkpoint, so every step is in the file once (a fresh run
/// starts it empty).
fn open_metrics(path: &Path, step: u64) -> Result<std::fs::File> {
    keep_metrics_until(path, step)?;
    std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))
}

fn keep_metrics_until(path: &Path, step: u64) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
                .is_some_and(|s| s <= step)
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if kept.len() != text.len() {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Trains the adapters of `model` (attached and made [`resa_lora::trainable`] by the
/// caller) on `chunks` towards `objective`; `on_step` sees every optimizer step and returns
/// whether to go on (`false` stops after that step's checkpointing, as an interruption
/// would; the final adapter is then not written). Returns the trained model and a report;
/// the final adapter is in `cfg.out/adapter`.
pub fn train_adapters<B: AutodiffBackend>(
    mut model: Qwen2ForCausalLM<B>,
    lora: &LoraConfig,
    objective: &dyn Objective<B>,
    chunks: &[Vec<u32>],
    cfg: &TuneConfig,
    on_step: &mut dyn FnMut(&StepMetrics) -> bool,
) -> Result<(Qwen2ForCausalLM<B>, TuneReport)> {
    cfg.validate()?;
    let keys = adapter_keys(&model);
    if keys.is_empty() {
        return Err(Error::option("lora", "the model carries no adapter to train (attach one first)"));
    }
    objective.check(&model)?;
    let seq = check_chunks(chunks, model.config().vocab_size)?;
    let (micro_per_step, total) = step_count(cfg, chunks.len())?;
    let order = order(chunks.len(), cfg.epochs, cfg.seed);
    let device = model.device();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    // What a killed run left (a half-written checkpoint under its temporary name) goes.
    resa_publish::remove_stale_temporaries(&cfg.out)?;
    let run_json =
        serde_json::to_string_pretty(&cfg).map_err(|e| Error::Json { what: "run.json", cause: e.to_string() })?;
    write_atomic(cfg.out.join("run.json"), run_json.as_bytes())?;

    let mut replicas = Replicas::new(&model, objective, cfg.data_parallel, cfg.nodes.as_ref())?;
    let nodes = cfg.nodes.as_ref().filter(|n| n.count > 1);
    if let Some(n) = nodes {
        replicas.learn_addresses(&model, n)?;
    }
    let (mut step, mut moments, mut last_checkpoint) = (0u64, Vec::new(), None);
    if cfg.resume
        && let Some((s, dir)) = replicas.resume_point(&model, checkpoints(&cfg.out), cfg, total)?
    {
        (model, moments) = load_checkpoint(model, &dir, &keys, cfg, total)?;
        replicas.sync(&model);
        tracing::info!(step = s, "resumed from {}", dir.display());
        (step, last_checkpoint) = (s, Some(dir));
    }
    if nodes.is_some() {
        replicas.agree_on_the_run(&model, cfg, total, step, chunks.len())?;
    }
    let metrics_path = cfg.out.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, step)?;
    let (mut first_loss, mut last_loss) = (None, None);
    while step < total {
        let t0 = Instant::now();
        // Dropout masks are keyed by micro-batch (`dropout_key`); the backend's own generator
        // is seeded by step for objectives that draw from it, so a resumed run draws the same.
        B::seed(&device, cfg.seed.wrapping_add(step));
        objective.begin_step(step);
        let first = step as usize * micro_per_step;
        let last_micro = first + micro_per_step - 1;
        let work = step_work(cfg, &order, chunks, first, micro_per_step);
        let tokens = micro_per_step * cfg.batch_size * seq;
        let shape = [cfg.batch_size, seq];
        let lr = cfg.lr_at(step, total);
        let line = |loss: f32, grad_norm: f32, tokens_per_second: f64| StepMetrics {
            step: step + 1,
            total,
            epoch: last_micro * cfg.batch_size / chunks.len().max(1),
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_second,
            objective: objective.step_metrics().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        let (loss_sum, grads) = match replicas.gradients(&model, objective, work, shape, micro_per_step, step) {
            Ok(r) => r,
            Err(Error::NonFiniteLoss { step, value }) => {
                // The failing step is recorded (its loss as null) before training stops.
                record(&mut metrics, &line(value, f32::NAN, 0.0));
                return Err(Error::NonFiniteLoss { step, value });
            }
            Err(Error::NodeLost(loss)) => {
                return Err(Error::NodeLost(NodeLoss { step, checkpoint: last_checkpoint, ..loss }));
            }
            Err(e) => return Err(e),
        };

        let norm_sq = squared_norm(&grads);
        let grad_norm = norm_sq.sqrt();
        if !grad_norm.is_finite() {
            // The failing step is recorded (the norm as null) before training stops; the
            // last good checkpoint is kept.
            let loss = loss_sum / micro_per_step as f32;
            record(&mut metrics, &line(loss, grad_norm, 0.0));
            let value = if loss.is_finite() { grad_norm } else { loss };
            return Err(Error::NonFiniteLoss { step, value });
        }
        let clip =
            if cfg.max_grad_norm > 0.0 { (cfg.max_grad_norm / (f64::from(grad_norm) + 1e-6)).min(1.0) } else { 1.0 };
        adamw_update(&mut model, &grads, &mut moments, cfg, clip, lr, step + 1);
        replicas.sync(&model);
        let loss = loss_sum / micro_per_step as f32;
        first_loss.get_or_insert(loss);
        last_loss = Some(loss);
        let m = line(loss, grad_norm, tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9));
        step += 1;
        let mut text =
            serde_json::to_string(&m).map_err(|e| Error::Json { what: "a metrics line", cause: e.to_string() })?;
        text.push('\n');
        metrics.write_all(text.as_bytes()).map_err(|e| Error::io(&metrics_path, e))?;
        if step.is_multiple_of(cfg.save_every) || step == total {
            last_checkpoint = Some(save_checkpoint(&model, lora, &keys, &moments, cfg, step, total)?);
        }
        if !on_step(&m) {
            let adapter = cfg.out.join("adapter");
            return Ok((model, TuneReport { steps: step, first_loss, last_loss, adapter }));
        }
    }
    let adapter = cfg.out.join("adapter");
    resa_lora::save_adapter(&model, lora, &adapter)?;
    Ok((model, TuneReport { steps: step, first_loss, last_loss, adapter }))
}

/// This node's share of optimizer step's micro-batches `first …`: micro-batch `first + j`
/// goes to replica `j % world` of the whole run; this node's replicas are
/// `rank × data_parallel …`. One list per local replica.
fn step_work(
    cfg: &TuneConfig,
    order: &[usize],
    chunks: &[Vec<u32>],
    first: usize,
    micro_per_step: usize,
) -> Vec<Vec<MicroBatch>> {
    let world = cfg.world_size();
    let rank = cfg.nodes.as_ref().map_or(0, |n| n.rank as usize);
    (0..cfg.data_parallel)
        .map(|r| {
            (rank * cfg.data_parallel + r..micro_per_step)
                .step_by(world)
                .map(|j| {
                    let m = first + j;
                    MicroBatch {
                        ids: order[m * cfg.batch_size..(m + 1) * cfg.batch_size]
                            .iter()
                            .flat_map(|&i| chunks[i].iter().map(|&t| i64::from(t)))
                            .collect(),
                        adapters: AdapterMode::Train(dropout_key(cfg.seed, m)),
                    }
                })
                .collect()
        })
        .collect()
}

/// The squared global norm over all gradients (torch's `clip_grad_norm_` norm), summed on
/// the device and read back once (not once per tensor: 392 reads per step at 1.5B with
/// seven modules in 28 layers).
fn squared_norm<B: Backend>(grads: &[Tensor<B, 2>]) -> f32 {
    if grads.is_empty() {
        return 0.0;
    }
    Tensor::cat(grads.iter().map(|g| g.clone().powi_scalar(2).sum()).collect::<Vec<_>>(), 0)
        .sum()
        .into_data()
        .iter::<f32>()
        .next()
        .unwrap_or(f32::NAN)
}

/// One AdamW update (PyTorch's semantics: decoupled weight decay, bias-corrected moments)
/// of every adapter matrix of `model` with `grads` scaled by `clip`, at step `t` (1-based);
/// the moments are created at the first step. Computed in f32 whatever the weights' dtype.
fn adamw_update<B: AutodiffBackend>(
    model: &mut Qwen2ForCausalLM<B>,
    grads: &[Tensor<B::InnerBackend, 2>],
    moments: &mut Vec<Moments<B::InnerBackend>>,
    cfg: &TuneConfig,
    clip: f64,
    lr: f64,
    t: u64,
) {
    let mut i = 0;
    for (_, lin) in model.linears_mut() {
        let Some(ad) = lin.adapter.as_mut() else { continue };
        for p in [&mut ad.a, &mut ad.b] {
            let g = grads[i].clone().mul_scalar(clip);
            let value = p.val().inner();
            let dtype = value.dtype();
            let w = value.cast(DType::F32);
            if moments.len() <= i {
                moments.push(Moments { m: w.zeros_like(), v: w.zeros_like() });
            }
            let w = cfg.adamw.update(w, g, &mut moments[i], lr, t);
            *p = Param::from_tensor(Tensor::from_inner(w.cast(dtype)));
            i += 1;
        }
    }
}

/// Copies of the model (and SAE) on the other devices of a data-parallel run; replica 0 is
/// the model itself. Each optimizer step, every replica computes the gradients of its
/// micro-batches on its own device (in its own thread); the sums over all replicas (of all
/// nodes) are burn-collective's all-reduce with the `collective` feature, and otherwise
/// the local replicas' vectors added on the primary's device; the primary is updated, and
/// the new adapter weights are copied back out to the other local replicas.
struct Replicas<'o, B: AutodiffBackend> {
    others: Vec<(Qwen2ForCausalLM<B>, Box<dyn Objective<B> + 'o>)>,
    /// Whether the run has more than one replica in all.
    parallel: bool,
    /// burn-collective's registration, when the run is parallel.
    #[cfg(feature = "collective")]
    collective: Option<Collective<B::InnerBackend>>,
    /// Shapes of the adapter gradients, in the order of `Qwen2ForCausalLM::linears`.
    shapes: Vec<[usize; 2]>,
    /// The tensor-service address of every node, by rank (empty on one node).
    node_addresses: Vec<String>,
}

impl<'o, B: AutodiffBackend> Replicas<'o, B> {
    fn new(
        model: &Qwen2ForCausalLM<B>,
        objective: &'o dyn Objective<B>,
        n: usize,
        nodes: Option<&Nodes>,
    ) -> Result<Self> {
        let primary = model.device();
        let id = primary.to_id();
        let count = B::device_count(id.type_id);
        let mut others = Vec::new();
        for i in 1..n {
            let index = usize::from(id.index_id) + i;
            let index_id =
                u16::try_from(index).map_err(|_| Error::option("data_parallel", format!("{n} is too many")))?;
            let device = <B::Device as Device>::from_id(DeviceId { type_id: id.type_id, index_id });
            // CPU backends have one device, which the replicas share.
            if device != primary && index >= count {
                return Err(Error::option(
                    "data_parallel",
                    format!(
                        "{n} replicas starting at {primary:?} need devices up to index {index}; the backend sees {count}"
                    ),
                ));
            }
            others.push((model.clone().fork(&device), objective.to_device(&device)));
        }
        let shapes = model
            .linears()
            .into_iter()
            .filter_map(|(_, l)| l.adapter.as_ref())
            .flat_map(|ad| [ad.a.val().dims(), ad.b.val().dims()])
            .collect();
        let parallel = n * nodes.map_or(1, |n| n.count as usize) > 1;
        #[cfg(feature = "collective")]
        let collective = if parallel {
            let devices = std::iter::once(primary).chain(others.iter().map(|(m, _)| m.device())).collect();
            Some(Collective::register(devices, nodes)?)
        } else {
            None
        };
        Ok(Replicas {
            others,
            parallel,
            #[cfg(feature = "collective")]
            collective,
            shapes,
            node_addresses: Vec::new(),
        })
    }

    /// Learns every node's tensor-service address (by rank), so that an error can name a
    /// lost node: one all-reduce of the addresses' bytes, each node's in its rank's slot.
    fn learn_addresses(&mut self, model: &Qwen2ForCausalLM<B>, nodes: &Nodes) -> Result<()> {
        let (count, width) = (nodes.count as usize, crate::nodes::MAX_ADDRESS_BYTES);
        let mut mine = vec![0.0f32; count * width];
        for (slot, b) in mine[nodes.rank as usize * width..].iter_mut().zip(nodes.address.bytes()) {
            *slot = f32::from(b);
        }
        let sum = self.sum_from_primary(model, mine)?;
        self.node_addresses = sum
            .chunks(width)
            .map(|slot| {
                let bytes: Vec<u8> = slot.iter().take_while(|&&b| b > 0.0).map(|&b| b as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect();
        Ok(())
    }

    /// The checkpoint to resume from: the newest intact one of `candidates`; with several
    /// nodes, the newest that every node has intact (a node killed while writing one has an
    /// older one), found with one all-reduce over the steps a checkpoint can have.
    fn resume_point(
        &self,
        model: &Qwen2ForCausalLM<B>,
        candidates: Vec<(u64, PathBuf)>,
        cfg: &TuneConfig,
        total: u64,
    ) -> Result<Option<(u64, PathBuf)>> {
        let Some(nodes) = cfg.nodes.as_ref().filter(|n| n.count > 1) else {
            return Ok(resa_publish::manifest::newest_intact(candidates));
        };
        // Checkpoints are written at every multiple of `save_every` and at the last step.
        let every = cfg.save_every.max(1);
        let slots = (total / every) as usize + 1;
        let slot = |step: u64| {
            if step == total {
                Some(slots - 1)
            } else {
                (step.is_multiple_of(every) && step > 0).then(|| (step / every) as usize - 1)
            }
        };
        let intact: Vec<(u64, PathBuf)> = resa_publish::manifest::all_intact(candidates)
            .into_iter()
            .filter(|(step, _)| slot(*step).is_some_and(|i| i < slots))
            .collect();
        let mut mine = vec![0.0f32; slots];
        for (step, _) in &intact {
            if let Some(i) = slot(*step) {
                mine[i] = 1.0;
            }
        }
        let everyone = self.sum_from_primary(model, mine)?;
        let newest_mine = intact.last().map(|(s, _)| *s);
        let common =
            intact.into_iter().rev().find(|(step, _)| slot(*step).is_some_and(|i| everyone[i] == nodes.count as f32));
        if let Some(newest) = newest_mine
            && common.as_ref().map(|(s, _)| *s) != Some(newest)
        {
            match &common {
                Some((s, _)) => tracing::warn!(
                    "checkpoint-{newest} is not complete on every node: the nodes go on from checkpoint-{s}, the newest all of them have"
                ),
                None => tracing::warn!("no checkpoint is complete on every node: the run starts over"),
            }
        }
        Ok(common)
    }

    /// The sum over all nodes of one vector from each node's primary replica (the other
    /// local replicas add zeros).
    fn sum_from_primary(&self, model: &Qwen2ForCausalLM<B>, values: Vec<f32>) -> Result<Vec<f32>> {
        let len = values.len();
        let zeros = vec![0.0f32; len];
        let flats = std::iter::once(Tensor::from_data(TensorData::new(values, [len]), &model.device()))
            .chain(
                self.others.iter().map(|(m, _)| Tensor::from_data(TensorData::new(zeros.clone(), [len]), &m.device())),
            )
            .collect();
        Ok(self.all_sum(flats)?.into_data().iter::<f32>().collect())
    }

    /// Sums one vector per local replica over all replicas of the run; returns the primary's
    /// result. Without the `collective` feature the run is one process: the vectors are
    /// added on the primary's device, in replica order.
    #[cfg(not(feature = "collective"))]
    fn all_sum(&self, flats: Vec<Tensor<B::InnerBackend, 1>>) -> Result<Tensor<B::InnerBackend, 1>> {
        let mut flats = flats.into_iter();
        let first = flats.next().ok_or_else(|| Error::Internal("no replica".into()))?;
        let device = first.device();
        Ok(flats.fold(first, |sum, f| sum + f.to_device(&device)))
    }

    /// Sums one vector per local replica over all replicas of the run (each replica's call in
    /// its own thread, as burn-collective needs); returns the primary's result.
    #[cfg(feature = "collective")]
    fn all_sum(&self, flats: Vec<Tensor<B::InnerBackend, 1>>) -> Result<Tensor<B::InnerBackend, 1>> {
        let Some(coll) = &self.collective else {
            return flats.into_iter().next().ok_or_else(|| Error::Internal("no replica".into()));
        };
        coll.sum(flats).map_err(|e| match e {
            Error::NodeLost(loss) => {
                let rank = loss.address.as_ref().and_then(|a| self.node_addresses.iter().position(|x| x == a));
                Error::NodeLost(NodeLoss { rank: rank.map(|r| r as u32), ..loss })
            }
            e => e,
        })
    }

    /// Checks, before the first step, that every node runs the same configuration from the
    /// same step on the same data: a node that resumed from another step, or runs another
    /// configuration, would sum gradients of other chunks.
    fn agree_on_the_run(
        &self,
        model: &Qwen2ForCausalLM<B>,
        cfg: &TuneConfig,
        total: u64,
        step: u64,
        chunks: usize,
    ) -> Result<()> {
        let params = self.shapes.iter().map(|s| s[0] * s[1]).sum::<usize>();
        self.agree(
            model,
            &[
                ("configuration (options, data size, steps)", cfg.fingerprint() ^ total as u32),
                ("step to resume from", step as u32),
                ("adapter size (parameters)", params as u32),
                ("chunk count", chunks as u32),
            ],
        )
    }

    /// Checks that every node of the run has the same `values` (each compared exactly, through
    /// one all-reduce of their hexadecimal digits and their squares).
    fn agree(&self, model: &Qwen2ForCausalLM<B>, values: &[(&str, u32)]) -> Result<()> {
        let nibbles = |v: u32| (0..8).map(move |i| ((v >> (4 * i)) & 15) as f32);
        let mut flat = vec![1.0f32];
        for &(_, v) in values {
            flat.extend(nibbles(v).flat_map(|d| [d, d * d]));
        }
        let sum = self.sum_from_primary(model, flat)?;
        let nodes = sum[0];
        for (k, &(what, mine)) in values.iter().enumerate() {
            let same = (0..8).all(|i| {
                let (s, sq) = (sum[1 + 16 * k + 2 * i], sum[2 + 16 * k + 2 * i]);
                s * s == nodes * sq
            });
            if !same {
                return Err(Error::Collective(format!(
                    "the nodes disagree on the {what} (this node: {mine}); start every node with the same data, \
                     configuration and run state"
                )));
            }
        }
        Ok(())
    }

    /// Loss sum and summed adapter gradients (on the primary device) of one optimizer step;
    /// `work[r]` are the micro-batches of local replica `r`, each scaled by `1 / micro_total`.
    fn gradients(
        &self,
        model: &Qwen2ForCausalLM<B>,
        objective: &dyn Objective<B>,
        work: Vec<Vec<MicroBatch>>,
        shape: [usize; 2],
        micro_total: usize,
        step: u64,
    ) -> Result<(f32, Vec<Tensor<B::InnerBackend, 2>>)> {
        let mut work = work.into_iter();
        let own = work.next().unwrap_or_default();
        if !self.parallel {
            return replica_pass(model, objective, own, shape, micro_total, step);
        }
        let params: usize = self.shapes.iter().map(|s| s[0] * s[1]).sum();
        // One replica's pass as one vector (gradients, then the loss sum). A replica that
        // failed still takes part in the sum (with NaN), so that no other replica or node
        // waits for it forever.
        let pass = |replica: &Qwen2ForCausalLM<B>, objective: &dyn Objective<B>, batches| {
            let device = replica.device();
            match replica_pass(replica, objective, batches, shape, micro_total, step) {
                Ok((loss, grads)) => {
                    let loss = Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(vec![loss], [1]), &device);
                    let parts = grads.into_iter().map(|g| g.flatten::<1>(0, 1)).chain(std::iter::once(loss));
                    (None, Tensor::cat(parts.collect(), 0))
                }
                Err(e) => (Some(e), Tensor::full([params + 1], f32::NAN, &device)),
            }
        };
        let (failures, flats): (Vec<Option<Error>>, Vec<_>) = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .others
                .iter()
                .zip(work)
                .map(|((replica, objective), batches)| {
                    let objective: &dyn Objective<B> = objective.as_ref();
                    (replica.device(), s.spawn(move || pass(replica, objective, batches)))
                })
                .collect();
            let mine = pass(model, objective, own);
            std::iter::once(mine)
                .chain(handles.into_iter().map(|(device, h)| {
                    h.join().unwrap_or_else(|_| {
                        let nan = Tensor::full([params + 1], f32::NAN, &device);
                        (Some(Error::Internal("a data-parallel replica panicked".into())), nan)
                    })
                }))
                .unzip()
        });
        let summed = self.all_sum(flats);
        if let Some(e) = failures.into_iter().flatten().next() {
            return Err(e);
        }
        let flat = summed?;
        let loss = flat.clone().slice(params..params + 1).into_data().iter::<f32>().next().unwrap_or(f32::NAN);
        if !loss.is_finite() {
            // Another node's replica failed or diverged.
            return Err(Error::NonFiniteLoss { step, value: loss });
        }
        let mut grads = Vec::with_capacity(self.shapes.len());
        let mut at = 0;
        for &[r, c] in &self.shapes {
            grads.push(flat.clone().slice(at..at + r * c).reshape([r, c]));
            at += r * c;
        }
        Ok((loss, grads))
    }

    /// Copies the primary's adapter weights to the other replicas.
    fn sync(&mut self, model: &Qwen2ForCausalLM<B>) {
        if self.others.is_empty() {
            return;
        }
        let weights: Vec<Tensor<B::InnerBackend, 2>> = model
            .linears()
            .into_iter()
            .filter_map(|(_, l)| l.adapter.as_ref())
            .flat_map(|ad| [ad.a.val().inner(), ad.b.val().inner()])
            .collect();
        for (replica, _) in &mut self.others {
            let device = replica.device();
            let mut w = weights.iter();
            for (_, lin) in replica.linears_mut() {
                let Some(ad) = lin.adapter.as_mut() else { continue };
                for p in [&mut ad.a, &mut ad.b] {
                    if let Some(w) = w.next() {
                        *p = Param::from_tensor(Tensor::from_inner(w.clone().to_device(&device)));
                    }
                }
            }
        }
    }
}

/// One micro-batch: its token ids (`batch × seq`, row-major) and the adapters' mode for its
/// forward (training, with the micro-batch's dropout key).
struct MicroBatch {
    ids: Vec<i64>,
    adapters: AdapterMode,
}

/// The dropout key of micro-batch `m` (counted over the whole run, so the same on every
/// replica, node and resume): every dropout mask of its forward is derived from it.
fn dropout_key(seed: u64, m: usize) -> u64 {
    resa_qwen2::dropout::mix(seed, m as u64)
}

/// Forward and backward of one replica's micro-batches: the sum of their losses and the
/// sum of their adapter gradients (f32, each loss divided by `micro_total` first).
fn replica_pass<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B>,
    objective: &dyn Objective<B>,
    batches: Vec<MicroBatch>,
    shape: [usize; 2],
    micro_total: usize,
    step: u64,
) -> Result<(f32, Vec<Tensor<B::InnerBackend, 2>>)> {
    let device = model.device();
    let mut loss_sum = 0.0f32;
    let mut grad_sum: Option<Vec<Tensor<B::InnerBackend, 2>>> = None;
    for batch in batches {
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(batch.ids, shape), &device);
        let (value, grads) = objective.loss_with_gradients(model, input, batch.adapters, micro_total as f64)?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, value });
        }
        loss_sum += value;
        let mut gs = Vec::new();
        for (_, lin) in model.linears() {
            if let Some(ad) = &lin.adapter {
                for p in [&ad.a, &ad.b] {
                    let g = p.val().grad(&grads).map(|g| g.cast(DType::F32));
                    gs.push(g.unwrap_or_else(|| p.val().inner().cast(DType::F32).zeros_like()));
                }
            }
        }
        grad_sum = Some(match grad_sum {
            None => gs,
            Some(acc) => acc.into_iter().zip(gs).map(|(a, b)| a + b).collect(),
        });
    }
    Ok((loss_sum, grad_sum.unwrap_or_default()))
}

/// Writes `checkpoint-STEP` (adapter, AdamW moments, trainer state, manifest last) and
/// returns its folder.
fn save_checkpoint<B: AutodiffBackend>(
    model: &Qwen2ForCausalLM<B>,
    lora: &LoraConfig,
    keys: &[String],
    moments: &[Moments<B::InnerBackend>],
    cfg: &TuneConfig,
    step: u64,
    total: u64,
) -> Result<PathBuf> {
    let dir = cfg.out.join(format!("checkpoint-{step}"));
    let tmp = temp_sibling(&dir, "tmp")?;
    resa_lora::save_adapter(model, lora, &tmp)?;
    let mut tensors = Vec::new();
    for (key, mo) in keys.iter().zip(moments) {
        for (prefix, t) in [("m", &mo.m), ("v", &mo.v)] {
            let shape = t.dims().to_vec();
            let v: Vec<f32> = t.clone().into_data().iter::<f32>().collect();
            tensors.push(OwnedTensor::from_f32(format!("{prefix}.{key}"), &v, shape, StoredDtype::F32));
        }
    }
    write_safetensors(tmp.join("optimizer.safetensors"), &tensors, None)?;
    let state = TrainerState { step, total, micro_batches: cfg.grad_accum, config: cfg.clone() };
    let json = serde_json::to_string_pretty(&state)
        .map_err(|e| Error::Json { what: "trainer_state.json", cause: e.to_string() })?;
    write_atomic(tmp.join("trainer_state.json"), json.as_bytes())?;
    resa_publish::manifest::write_manifest(&tmp)?;
    replace_dir(&tmp, &dir)?;
    Ok(dir)
}
