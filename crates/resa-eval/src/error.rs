//! Errors of the evaluation crate.

use std::path::PathBuf;

/// What can go wrong reading benchmark files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A line is not a JSON object with the expected fields.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds no problem.
    #[error("{0}: no problems")]
    Empty(PathBuf),
    /// No benchmark has this name.
    #[error("unknown benchmark `{name}`; known: {known}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A benchmark's data is not where it was looked for.
    #[error("benchmark `{task}`: {message}")]
    MissingData {
        /// The benchmark.
        task: String,
        /// Where it was looked for and what to do.
        message: String,
    },
    /// Settings that cannot work (zero samples, a batch of zero, …).
    #[error("invalid evaluation setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An output folder holds completions made with other generation settings.
    #[error("{path} holds completions generated with other settings ({message}); use another --out or delete it")]
    Mismatch {
        /// The settings file of the folder.
        path: PathBuf,
        /// Which setting differs.
        message: String,
    },
    /// Tokenising, the chat template or generation failed.
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
