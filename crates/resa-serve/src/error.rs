//! Errors of the server.

use std::path::PathBuf;

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound or served.
    #[error("cannot serve on {addr}: {cause}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A setting that cannot work.
    #[error("invalid server setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An adapter could not be loaded.
    #[error("adapter `{name}` ({}): {message}", dir.display())]
    Adapter {
        /// The name it is served as.
        name: String,
        /// Its folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The runtime or the model thread failed.
    #[error("the server stopped: {0}")]
    Stopped(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
