//! The error of a publish: which path, and what the operating system said.

use std::path::PathBuf;

/// A publish failed: the file or folder, and the operating system's error.
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {path}: {cause}")]
pub struct Error {
    /// The file or folder being published (or removed).
    pub path: PathBuf,
    /// The underlying error.
    pub cause: std::io::Error,
}

impl Error {
    pub(crate) fn new(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error { path: path.into(), cause }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
