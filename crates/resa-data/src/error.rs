//! Errors of the data crate.

use std::path::PathBuf;

/// What can go wrong reading, templating or tokenising data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message).
        cause: std::io::Error,
    },
    /// A JSONL line or JSON file is not valid JSON, or a row is not an object.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (JSONL) or 1 for a JSON array file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A row lacks a field (or has it empty) and strict reading was asked for.
    #[error(
        "{path}:{line}: field `{field}` {found} (fields tried: {tried}; a non-empty string or a number is expected)"
    )]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line or row.
        line: usize,
        /// `problem` or `answer`.
        field: String,
        /// The keys looked up, in order.
        tried: String,
        /// What was there: "is missing", "is empty", "is an array", ….
        found: String,
    },
    /// The file held no usable row.
    #[error("{path}: no usable rows ({reason})")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Counts of what was skipped.
        reason: String,
    },
    /// A custom template lacks a placeholder.
    #[error("template {template:?}: {message}")]
    Template {
        /// The template string.
        template: String,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed or lacks a needed special token.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A dataset name is neither a file, a folder, a registry name nor a hub id.
    #[error(
        "unknown dataset `{name}`: not a file or folder, not a hub id (owner/name), and not one of the registry's names ({known})"
    )]
    UnknownDataset {
        /// The name as given.
        name: String,
        /// The registry's names.
        known: String,
    },
    /// A hub dataset could not be listed or fetched (offline, not found, no data files).
    #[error("hub dataset `{repo}`: {message}")]
    Hub {
        /// The repository id.
        repo: String,
        /// What went wrong.
        message: String,
    },
    /// Chunking options are impossible.
    #[error("invalid chunk options: {0}")]
    Options(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
