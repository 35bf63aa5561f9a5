//! Errors of the feature tools.

use std::path::PathBuf;

/// What can go wrong extracting features, fitting mixtures or drawing figures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model or an SAE failed.
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
    /// An SAE failed.
    #[error(transparent)]
    Sae(#[from] resa_sae::Error),
    /// The prompt does not hold the marker tokens as expected.
    #[error("prompt: {0}")]
    Prompt(String),
    /// Bad input to the mixture fit or the proposal.
    #[error("invalid input `{field}`: {message}")]
    Input {
        /// What was given.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A file's content is not what was expected.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Drawing a figure failed.
    #[error("figure {path}: {message}")]
    Plot {
        /// The figure file.
        path: PathBuf,
        /// The drawing error.
        message: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
