#![doc = include_str!("../README.md")]

pub mod curves;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod features;
pub mod pipeline;
pub mod run;
pub mod stage;
pub mod stamp;
pub mod tensorboard;

pub use error::{Error, Result};
pub use evaluation::{Evaluation, load_tasks};
pub use pipeline::{MemoryLimit, Pipeline, PipelineEvent, PipelineFile, SaeSource};
pub use run::{PipelineReport, RESOLVED_CONFIG, run_pipeline, run_stage1, sae_folder};
pub use stage::{AdapterTraining, Merge, SaeTraining, Stage, run_stage};
