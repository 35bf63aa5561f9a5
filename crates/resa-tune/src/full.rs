//! Full-parameter training with next-token cross-entropy: every weight of the model trains
//! (no adapter). The built-in toy model is trained from scratch with it; it is also the
//! loop for full fine-tuning of small models.
//!
//! AdamW (burn's, with PyTorch's decoupled weight decay, from [`AdamW`]'s options), global gradient-norm clipping over
//! all parameters (as `torch.nn.utils.clip_grad_norm_`), linear warm-up then cosine decay,
//! a seeded data order reshuffled every epoch. Deterministic for a given backend, seed and
//! thread count.

use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData, backend::AutodiffBackend};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use resa_qwen2::{AdapterMode, Qwen2ForCausalLM};
use serde::{Deserialize, Serialize};

use crate::adamw::AdamW;
use crate::error::{Error, Result};
use crate::stage2::causal_lm_loss;
use crate::train::{LrSchedule, StepMetrics};

/// Options of a full-parameter run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullTrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule over `steps`.
    pub schedule: LrSchedule,
    /// AdamW's β₁, β₂, ε and decoupled weight decay, written as fields of this table.
    #[serde(flatten)]
    pub adamw: AdamW,
    /// Global gradient-norm clip (0 turns it off).
    pub max_grad_norm: f64,
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Seed of the data order.
    pub seed: u64,
}

impl Default for FullTrainConfig {
    fn default() -> Self {
        FullTrainConfig {
            lr: 3e-3,
            schedule: LrSchedule::Cosine { warmup_steps: 100, min_lr_ratio: 0.1 },
            adamw: AdamW { betas: (0.9, 0.95), ..AdamW::default() },
            max_grad_norm: 1.0,
            steps: 1000,
            batch_size: 16,
            seed: 0,
        }
    }
}

impl FullTrainConfig {
    /// The learning rate at step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        self.schedule.lr_at(self.lr, step, self.steps)
    }
}

/// The gradients keyed by parameter, and the sum of their squares (on the device: one host
/// read per step, not one per parameter).
struct Collect<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: GradientsParams,
    norm_sq: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let sq = g.clone().powi_scalar(2).sum();
            self.norm_sq = Some(match self.norm_sq.take() {
                Some(acc) => acc + sq,
                None => sq,
            });
            self.out.register::<B::InnerBackend, D>(param.id, g);
        }
    }
}

/// Scales every collected gradient.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register::<B::InnerBackend, D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Marks every parameter as trainable.
struct RequireGrad;

impl<B: AutodiffBackend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

/// Trains every weight of `model` on `chunks` (equal-length token sequences) with
/// next-token cross-entropy. `on_step` sees each step and returns whether to go on.
pub fn train_full<B: AutodiffBackend>(
    model: Qwen2ForCausalLM<B>,
    chunks: &[Vec<u32>],
    cfg: &FullTrainConfig,
    on_step: &mut dyn FnMut(&StepMetrics) -> bool,
) -> Result<Qwen2ForCausalLM<B>>
where
    Qwen2ForCausalLM<B>: AutodiffModule<B>,
{
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::option("lr", format!("must be positive, got {}", cfg.lr)));
    }
    if cfg.batch_size == 0 || cfg.steps == 0 {
        return Err(Error::option("batch_size/steps", "must be positive"));
    }
    let seq = chunks.first().map(Vec::len).unwrap_or(0);
    if seq < 2 || chunks.len() < cfg.batch_size {
        return Err(Error::option(
            "data",
            format!("{} chunks of {seq} tokens cannot fill a batch of {}", chunks.len(), cfg.batch_size),
        ));
    }
    if let Some((i, c)) = chunks.iter().enumerate().find(|(_, c)| c.len() != seq) {
        return Err(Error::option("data", format!("chunk {i} has {} tokens, chunk 0 has {seq}", c.len())));
    }
    let vocab = model.config().vocab_size;
    if let Some(bad) = chunks.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::option("data", format!("token id {bad} is outside the model's vocabulary ({vocab} ids)")));
    }
    let device = model.device();
    let mut model = model.map(&mut RequireGrad);
    let mut optim = cfg.adamw.burn_config().init::<B, Qwen2ForCausalLM<B>>();
    let per_epoch = chunks.len() / cfg.batch_size;
    let mut order: Vec<usize> = Vec::new();
    for step in 0..cfg.steps {
        let t0 = Instant::now();
        let slot = step as usize % per_epoch;
        if slot == 0 {
            let epoch = step as usize / per_epoch;
            order = (0..chunks.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64)));
        }
        let ids: Vec<i64> = order[slot * cfg.batch_size..(slot + 1) * cfg.batch_size]
            .iter()
            .flat_map(|&i| chunks[i].iter().map(|&t| i64::from(t)))
            .collect();
        let tokens = ids.len();
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [cfg.batch_size, seq]), &device);
        let loss = causal_lm_loss(&model, input, AdapterMode::Off)?;
        let value = loss.clone().into_data().iter::<f32>().next().unwrap_or(f32::NAN);
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, value });
        }
        let grads = loss.backward();
        let mut collect = Collect::<B> { grads: &grads, out: GradientsParams::new(), norm_sq: None };
        model.visit(&mut collect);
        let norm_sq = collect.norm_sq.map_or(0.0, |t| t.into_data().iter::<f32>().next().unwrap_or(f32::NAN));
        let grad_norm = f64::from(norm_sq).sqrt();
        let mut params = collect.out;
        if cfg.max_grad_norm > 0.0 && grad_norm > cfg.max_grad_norm {
            let factor = cfg.max_grad_norm / (grad_norm + 1e-6);
            model.visit(&mut Scale { grads: &mut params, factor });
        }
        let lr = cfg.lr_at(step);
        model = optim.step(lr, model, params);
        let m = StepMetrics {
            step: step + 1,
            total: cfg.steps,
            epoch: step as usize / per_epoch,
            loss: value,
            lr,
            grad_norm: grad_norm as f32,
            tokens,
            tokens_per_second: tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            objective: Default::default(),
        };
        if !on_step(&m) {
            break;
        }
    }
    Ok(model)
}
