#![doc = include_str!("../README.md")]

pub mod error;
pub mod full;
pub mod lora_grads;
pub mod objective;
pub mod stage2;
pub mod train;

pub use error::{Error, Result};
pub use lora_grads::lora_gradients;
pub use objective::{Objective, SaeTuning, Sft};
pub use stage2::{
    SaeGrad, SaeSplice, causal_lm_loss, kl_batchmean, prefix_adapters_are_zero, stage2_loss, stage2_loss_shared_prefix,
};
pub use train::{LrSchedule, StepMetrics, TuneConfig, TuneReport, checkpoints, train_adapters};
