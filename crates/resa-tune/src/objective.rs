//! What Stage II trains the adapters to do, as a trait: [`SaeTuning`] (the method) and
//! [`Sft`] (the CoT-free SFT baseline) implement it, and a downstream crate can add its own
//! (a different divergence, a distillation target) without touching the trainer.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use resa_qwen2::{AdapterMode, CheckedHookpoint, Qwen2ForCausalLM};
use resa_sae::SparseCoder;

use crate::error::{Error, Result};
use crate::stage2::{
    Head, SaeGrad, causal_lm_loss, prefix_adapters_are_zero, stage2_gradients_recomputed, stage2_loss,
    stage2_loss_shared_prefix, student_starts_at,
};

/// A training objective of [`train_adapters`](crate::train_adapters): the loss of one
/// micro-batch, with the adapters in training mode.
pub trait Objective<B: AutodiffBackend>: Send + Sync {
    /// A short name (`sae-tuning`, `sft`), for logs and reports.
    fn name(&self) -> &'static str;

    /// Checks that the objective can run on `model`, before the first step (the default
    /// accepts every model).
    fn check(&self, model: &Qwen2ForCausalLM<B>) -> Result<()> {
        let _ = model;
        Ok(())
    }

    /// Called before each optimizer step's micro-batches with the step's index (0-based; a
    /// resumed run calls it with the steps it repeats), e.g. to seed sampling inside the loss
    /// so that a resumed run draws what the uninterrupted one did. Default: nothing.
    fn begin_step(&self, step: u64) {
        let _ = step;
    }

    /// The scalar loss of `input_ids` `[batch, seq]`, to be minimised, with the trained
    /// model's adapters acting as `adapters` says: the trainer passes
    /// [`AdapterMode::Train`] with a key of its seed, the step and the micro-batch, from which
    /// every dropout mask of the forward is derived.
    fn loss(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
    ) -> Result<Tensor<B, 1>>;

    /// The loss of `input_ids` (as [`Objective::loss`]) and the gradients of `loss / divisor`
    /// (the trainer divides by the micro-batches of a step). The default runs one backward
    /// through [`Objective::loss`]'s graph; an objective may compute the same gradients
    /// another way (fewer activations held at once) and only needs every trained adapter's
    /// gradient to be readable from the returned gradients.
    fn loss_with_gradients(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
        divisor: f64,
    ) -> Result<(f32, B::Gradients)> {
        Ok(backward_of(self.loss(model, input_ids, adapters)?, divisor))
    }

    /// What the objective measured since the last call (named values), added to the step's
    /// metrics line after each step. Default: nothing.
    fn step_metrics(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// The same objective with its tensors on `device` (a data-parallel replica).
    fn to_device(&self, device: &B::Device) -> Box<dyn Objective<B> + '_>;
}

/// The value of `loss` and the gradients of `loss / divisor`; for a non-finite value (which
/// the trainer reports) no backward runs through the graph.
fn backward_of<B: AutodiffBackend>(loss: Tensor<B, 1>, divisor: f64) -> (f32, B::Gradients) {
    let value = loss.clone().into_data().iter::<f32>().next().unwrap_or(f32::NAN);
    if !value.is_finite() {
        return (value, loss.detach().require_grad().backward());
    }
    (value, loss.div_scalar(divisor).backward())
}

/// Stage II: match the unmodified model's next-token distribution with the frozen SAE
/// spliced in at `hookpoint` (KL, [`stage2_loss`]).
///
/// With the `detach` splice at a residual hookpoint `layers.L` and adapters of layers
/// `0..=L` at `B = 0` (checked before the first step), each step runs the student from the
/// teacher's activation at the hookpoint
/// ([`stage2_loss_shared_prefix`]): the same loss and
/// gradients for `L + 1` fewer student layers. [`SaeTuning::with_shared_prefix`] turns that
/// off.
pub struct SaeTuning<'a, B: AutodiffBackend> {
    sae: Cow<'a, SparseCoder<B>>,
    hookpoint: CheckedHookpoint,
    grad: SaeGrad,
    allow_shared_prefix: bool,
    shared_prefix: AtomicBool,
    head: Option<Head>,
    recompute: bool,
}

impl<'a, B: AutodiffBackend> SaeTuning<'a, B> {
    /// The SAE, where it is spliced (checked against the target model's depth), and how
    /// gradients pass it.
    pub fn new(sae: &'a SparseCoder<B>, hookpoint: CheckedHookpoint, grad: SaeGrad) -> Self {
        SaeTuning {
            sae: Cow::Borrowed(sae),
            hookpoint,
            grad,
            allow_shared_prefix: true,
            shared_prefix: AtomicBool::new(false),
            head: None,
            recompute: false,
        }
    }

    /// How the loss applies the output head (default: [`Head::auto`] for each micro-batch's
    /// positions and the model's vocabulary — whole logits for small shapes, pieces of 256
    /// positions at the paper's).
    pub fn with_head(mut self, head: Head) -> Self {
        self.head = Some(head);
        self
    }

    /// Whether the student may start from the teacher's activation when that is exact
    /// (default: yes).
    pub fn with_shared_prefix(mut self, allow: bool) -> Self {
        self.allow_shared_prefix = allow;
        self
    }

    /// Whether the student's layers are recomputed in the backward (default: no): the
    /// student's forward keeps only each layer's input, and the backward runs one layer at a
    /// time again with its graph ([`stage2_gradients_recomputed`]) — the same loss and
    /// gradients with one layer's activations held instead of every student layer's, for
    /// one more forward of the student's layers. Needs the shared prefix (the `detach`
    /// splice at a residual hookpoint, adapters up to it at zero); [`Objective::check`]
    /// refuses it otherwise.
    pub fn with_recompute(mut self, recompute: bool) -> Self {
        self.recompute = recompute;
        self
    }

    /// Whether the student's layers are recomputed in the backward.
    pub fn recomputes(&self) -> bool {
        self.recompute
    }

    /// The head for a micro-batch of `input_ids`: the one set, or [`Head::auto`].
    fn head_for(&self, model: &Qwen2ForCausalLM<B>, input_ids: &Tensor<B, 2, Int>) -> Head {
        let [b, s] = input_ids.dims();
        self.head.unwrap_or_else(|| Head::auto(b * s, model.config().vocab_size))
    }

    /// Whether [`Objective::check`] found the shared prefix exact (it is then used).
    pub fn uses_shared_prefix(&self) -> bool {
        self.shared_prefix.load(Ordering::Relaxed)
    }

    /// The spliced SAE.
    pub fn sae(&self) -> &SparseCoder<B> {
        &self.sae
    }

    /// Where it is spliced.
    pub fn hookpoint(&self) -> CheckedHookpoint {
        self.hookpoint
    }

    /// How gradients pass it.
    pub fn grad(&self) -> SaeGrad {
        self.grad
    }
}

impl<B: AutodiffBackend> Objective<B> for SaeTuning<'_, B> {
    fn name(&self) -> &'static str {
        "sae-tuning"
    }

    fn check(&self, model: &Qwen2ForCausalLM<B>) -> Result<()> {
        self.hookpoint.check_depth(model.config().num_hidden_layers)?;
        self.sae.check_width(model.config().hidden_size)?;
        let shared = self.allow_shared_prefix
            && student_starts_at(self.grad, self.hookpoint.hookpoint())
                .is_some_and(|l| prefix_adapters_are_zero(model, l));
        self.shared_prefix.store(shared, Ordering::Relaxed);
        if self.recompute && !shared {
            return Err(Error::option(
                "recompute",
                format!(
                    "recomputing the student's layers needs the student to start at the hookpoint: the `detach` \
                     splice at a residual hookpoint (here {} with `{}`) and the adapters up to it at zero",
                    self.hookpoint,
                    self.grad.name()
                ),
            ));
        }
        if shared {
            tracing::info!(hookpoint = %self.hookpoint, "the student starts from the teacher's activation at the hookpoint");
        }
        Ok(())
    }

    fn loss(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
    ) -> Result<Tensor<B, 1>> {
        let head = self.head_for(model, &input_ids);
        if self.uses_shared_prefix() {
            stage2_loss_shared_prefix(model, &self.sae, self.hookpoint, input_ids, adapters, head)
        } else {
            stage2_loss(model, &self.sae, self.hookpoint, self.grad, input_ids, adapters, head)
        }
    }

    fn loss_with_gradients(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
        divisor: f64,
    ) -> Result<(f32, B::Gradients)> {
        if self.recompute && self.uses_shared_prefix() {
            let head = self.head_for(model, &input_ids);
            stage2_gradients_recomputed(model, &self.sae, self.hookpoint, input_ids, adapters, head, divisor)
        } else {
            Ok(backward_of(self.loss(model, input_ids, adapters)?, divisor))
        }
    }

    fn to_device(&self, device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(SaeTuning {
            sae: Cow::Owned(self.sae.as_ref().clone().to_device(device)),
            hookpoint: self.hookpoint,
            grad: self.grad,
            allow_shared_prefix: self.allow_shared_prefix,
            shared_prefix: AtomicBool::new(self.uses_shared_prefix()),
            head: self.head,
            recompute: self.recompute,
        })
    }
}

/// The CoT-free SFT baseline: next-token cross-entropy on the same data, no SAE
/// ([`causal_lm_loss`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sft;

impl<B: AutodiffBackend> Objective<B> for Sft {
    fn name(&self) -> &'static str {
        "sft"
    }

    fn loss(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
    ) -> Result<Tensor<B, 1>> {
        causal_lm_loss(model, input_ids, adapters)
    }

    fn to_device(&self, _device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(Sft)
    }
}
