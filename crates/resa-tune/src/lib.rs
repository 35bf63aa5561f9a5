#![doc = include_str!("../README.md")]

pub mod adamw;
#[cfg(feature = "collective")]
pub mod collective;
pub mod error;
pub mod full;
pub mod grpo;
pub mod host;
pub mod lora_grads;
pub mod memory;
pub mod nodes;
pub mod objective;
pub mod stage2;
pub mod train;

pub use adamw::AdamW;
pub use error::{Error, NodeLoss, Result};
pub use grpo::{Grpo, GrpoConfig};
pub use lora_grads::lora_gradients;
pub use memory::{MemoryEstimate, Stage2Shape, stage2_memory};
pub use nodes::Nodes;
pub use objective::{Objective, SaeTuning, Sft};
pub use stage2::{
    Head, SaeGrad, SaeSplice, causal_lm_loss, kl_batchmean, kl_batchmean_from_hidden, prefix_adapters_are_zero,
    stage2_gradients_recomputed, stage2_loss, stage2_loss_shared_prefix, student_starts_at,
};
pub use train::{LrSchedule, StepMetrics, TuneConfig, TuneReport, checkpoints, train_adapters};
