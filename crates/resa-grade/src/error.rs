//! Errors of the grading crate.

/// What can go wrong setting up grading (grading itself never fails: an answer that cannot
/// be read is graded wrong, with the reason in [`crate::Explained`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No grading configuration has this name.
    #[error("unknown grading configuration `{name}`; known: {known}")]
    UnknownConfig {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
