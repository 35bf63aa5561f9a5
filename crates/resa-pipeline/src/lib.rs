#![doc = include_str!("../README.md")]

pub mod error;
pub mod evaluation;
pub mod features;
pub mod pipeline;
pub mod stage;

pub use error::{Error, Result};
pub use evaluation::{Evaluation, load_tasks};
pub use pipeline::{MemoryLimit, Pipeline, PipelineEvent, PipelineFile, PipelineReport, SaeSource, run_pipeline};
pub use stage::{AdapterTraining, Merge, SaeTraining, Stage, run_stage};
