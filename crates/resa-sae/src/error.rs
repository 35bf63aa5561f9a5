//! Errors of the SAE crate.

use std::path::PathBuf;

/// What can go wrong loading, saving, running or training a sparse coder.
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
    /// `cfg.json` is not valid JSON or lacks a required field.
    #[error("{path}: invalid sparse coder config: {message}")]
    Config {
        /// The `cfg.json` file (or a description of where the config came from).
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The configuration asks for something this crate does not run.
    #[error("{path}: unsupported sparse coder: {message}")]
    Unsupported {
        /// The SAE folder.
        path: PathBuf,
        /// What is not supported and why.
        message: String,
    },
    /// `sae.safetensors` does not hold sparsify's tensors (a missing or an unexpected name).
    #[error(
        "{path}: {message} (a sparsify SAE holds encoder.weight, encoder.bias, W_dec, b_dec and, with a skip connection, W_skip)"
    )]
    SaeTensors {
        /// The weights file.
        path: PathBuf,
        /// Which tensor and what is wrong with it.
        message: String,
    },
    /// Reading or writing safetensors failed, or a tensor is mis-shaped.
    #[error(transparent)]
    Tensors(#[from] resa_qwen2::Error),
    /// An input tensor does not fit the SAE.
    #[error("invalid input `{field}`: {message}")]
    Input {
        /// The argument (`activations`, `dead_mask`, …).
        field: &'static str,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Stage I's data: a chunk of another length, or a token outside the model's vocabulary.
    #[error("Stage I data: chunk {chunk}: {message}")]
    Chunk {
        /// The chunk (0-based, in the order given).
        chunk: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Something the trainer never expects (a forward that did not capture a hookpoint): a
    /// defect of this program, not of its inputs.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// A record could not be written as JSON.
    #[error("{what} cannot be written as JSON: {cause}")]
    Json {
        /// What was being written.
        what: &'static str,
        /// The serializer's error.
        cause: String,
    },
    /// Activations of a width other than the SAE's `d_in`.
    #[error("the SAE reads width {d_in}, the activations have width {width}")]
    Width {
        /// The SAE's input width.
        d_in: usize,
        /// The activations' width (a model's hidden size).
        width: usize,
    },
    /// Training options are impossible.
    #[error("invalid training option `{option}`: {message}")]
    Options {
        /// The option, e.g. `k`.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite; training stopped (the last checkpoint is kept).
    #[error(
        "training stopped at step {step}: the loss of `{hookpoint}` is {value} (not finite); the last good checkpoint is kept"
    )]
    NonFiniteLoss {
        /// The step that produced it (0-based).
        step: u64,
        /// The hookpoint whose SAE diverged.
        hookpoint: String,
        /// The value.
        value: f32,
    },
    /// Data could not be prepared for Stage I.
    #[error(transparent)]
    Data(#[from] resa_data::Error),
    /// A saved training state does not match the run being resumed.
    #[error("cannot resume from {path}: {message}")]
    Resume {
        /// The checkpoint folder.
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
