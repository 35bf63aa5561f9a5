//! Errors: [`resa_pipeline::Error`], re-exported. They are the pipeline's because every run of the toy world is a composition of the pipeline's stages, and what goes wrong is what goes wrong in a stage or in the run's own files.

pub use resa_pipeline::{Error, Result};
