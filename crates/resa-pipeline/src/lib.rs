#![doc = include_str!("../README.md")]

pub mod bench;
pub mod demo;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod features;
pub mod pipeline;
pub mod reproduce;
pub mod rl;
pub mod stage;
pub mod toy_model;
pub mod toy_paper;

pub use error::{Error, Result};
pub use evaluation::{Evaluation, RemoteEvaluation, load_tasks};
pub use pipeline::{MemoryLimit, Pipeline, PipelineEvent, PipelineFile, PipelineReport, SaeSource, run_pipeline};
pub use stage::{AdapterTraining, Merge, SaeTraining, Stage, run_stage};
