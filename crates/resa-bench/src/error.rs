//! Errors: [`resa_pipeline::Error`], re-exported. They are the pipeline's because a workload runs the pipeline's parts on random weights, and what goes wrong is what goes wrong in them.

pub use resa_pipeline::{Error, Result};
