//! Errors of the trainer.

use std::path::PathBuf;

/// What can go wrong setting up or running Stage II or SFT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error (shown in the message).
        cause: std::io::Error,
    },
    /// Model errors (loading, hookpoints, shapes).
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
    /// SAE errors.
    #[error(transparent)]
    Sae(#[from] resa_sae::Error),
    /// Adapter errors.
    #[error(transparent)]
    Lora(#[from] resa_lora::Error),
    /// Data errors.
    #[error(transparent)]
    Data(#[from] resa_data::Error),
    /// The parts of a run do not fit together (SAE width, hookpoint, model shapes).
    #[error("incompatible setup: {0}")]
    Setup(String),
    /// An option is impossible.
    #[error("invalid option `{option}`: {message}")]
    Options {
        /// The option.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite; training stopped (the last checkpoint is kept).
    #[error("training stopped at step {step}: the loss is {value} (not finite); the last good checkpoint is kept")]
    NonFiniteLoss {
        /// Optimizer step at which it happened (0-based).
        step: u64,
        /// The value.
        value: f32,
    },
    /// The replicas or nodes of a data-parallel run could not meet or sum their gradients
    /// (burn-collective: registration, the orchestrator, an all-reduce).
    #[error("data parallel: {0}")]
    Collective(String),
    /// A checkpoint does not match the run being resumed.
    #[error("cannot resume from {path}: {message}")]
    Resume {
        /// The checkpoint.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }

    pub(crate) fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Options { option: option.into(), message: message.into() }
    }
}

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
