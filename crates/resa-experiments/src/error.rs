//! Errors: [`resa_pipeline::Error`], re-exported. They are the pipeline's because an experiment is a plan of the pipeline's stages, and what goes wrong is what goes wrong in a stage or in an experiment file ([`Error::Experiment`]).

pub use resa_pipeline::{Error, Result};
