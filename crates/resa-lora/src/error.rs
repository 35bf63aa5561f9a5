//! Errors of the LoRA crate.

use std::path::PathBuf;

/// What can go wrong configuring, attaching, reading, writing or merging adapters.
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
    /// `adapter_config.json` is malformed or holds an impossible value.
    #[error("{path}: adapter config field `{field}`: {message}")]
    Config {
        /// The config file (or `<LoraConfig>` for one built in code).
        path: PathBuf,
        /// The field, e.g. `r`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A target module names no linear layer of the model.
    #[error(
        "target module `{target}` matches no linear layer of the model (its linear layers end in q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
    )]
    UnknownTarget {
        /// The entry of `target_modules`.
        target: String,
    },
    /// Reading/writing safetensors, or a model error.
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
    /// The model already carries adapters, or has none where some are needed.
    #[error("{0}")]
    State(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }
}

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
