//! What Stage II trains the adapters to do, as a trait: [`SaeTuning`] (the method) and
//! [`Sft`] (the CoT-free SFT baseline) implement it, and a downstream crate can add its own
//! (a different divergence, a distillation target) without touching the trainer.

use std::borrow::Cow;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use resa_qwen2::{AdapterMode, Hookpoint, Qwen2ForCausalLM};
use resa_sae::SparseCoder;

use crate::error::{Error, Result};
use crate::stage2::{SaeGrad, causal_lm_loss, stage2_loss};

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

    /// The scalar loss of `input_ids` `[batch, seq]`, to be minimised.
    fn loss(&self, model: &Qwen2ForCausalLM<B>, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 1>>;

    /// The same objective with its tensors on `device` (a data-parallel replica).
    fn to_device(&self, device: &B::Device) -> Box<dyn Objective<B> + '_>;
}

/// Stage II: match the unmodified model's next-token distribution with the frozen SAE
/// spliced in at `hookpoint` (KL, [`stage2_loss`]).
pub struct SaeTuning<'a, B: AutodiffBackend> {
    sae: Cow<'a, SparseCoder<B>>,
    hookpoint: Hookpoint,
    grad: SaeGrad,
}

impl<'a, B: AutodiffBackend> SaeTuning<'a, B> {
    /// The SAE, where it is spliced, and how gradients pass it.
    pub fn new(sae: &'a SparseCoder<B>, hookpoint: Hookpoint, grad: SaeGrad) -> Self {
        SaeTuning { sae: Cow::Borrowed(sae), hookpoint, grad }
    }

    /// The spliced SAE.
    pub fn sae(&self) -> &SparseCoder<B> {
        &self.sae
    }

    /// Where it is spliced.
    pub fn hookpoint(&self) -> Hookpoint {
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
        self.hookpoint.check(model.config().num_hidden_layers)?;
        if self.sae.d_in() != model.config().hidden_size {
            return Err(Error::Setup(format!(
                "the SAE reads width {} but the model's hidden size is {}",
                self.sae.d_in(),
                model.config().hidden_size
            )));
        }
        Ok(())
    }

    fn loss(&self, model: &Qwen2ForCausalLM<B>, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 1>> {
        stage2_loss(model, &self.sae, self.hookpoint, self.grad, input_ids, AdapterMode::Train)
    }

    fn to_device(&self, device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(SaeTuning {
            sae: Cow::Owned(self.sae.as_ref().clone().to_device(device)),
            hookpoint: self.hookpoint,
            grad: self.grad,
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

    fn loss(&self, model: &Qwen2ForCausalLM<B>, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 1>> {
        causal_lm_loss(model, input_ids, AdapterMode::Train)
    }

    fn to_device(&self, _device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(Sft)
    }
}
