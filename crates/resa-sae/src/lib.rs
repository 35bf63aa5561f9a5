#![doc = include_str!("../README.md")]

pub mod coder;
pub mod config;
pub mod error;
pub mod host;
pub mod stage1;
pub mod train;

pub use coder::{Encoded, SaeOutput, SparseCoder, resolve_sae, sae_folder, sparse_decode, total_variance};
pub use config::{Activation, SaeConfig};
pub use error::{Error, Result};
pub use stage1::{Progress, SaeInit, Stage1Options, Stage1Report, train_saes, train_saes_with};
pub use train::{OptimizerKind, SaeTrainer, StepMetrics, TrainConfig, remove_parallel_component};
