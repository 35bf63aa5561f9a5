//! Errors of the pipeline: every lower crate's error, and what goes wrong in a run's own
//! files (configuration, experiment files, reports).

use std::path::PathBuf;

/// What can go wrong configuring or running a stage.
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
    /// A configuration or experiment file does not parse (TOML syntax, an unknown key, a
    /// value of the wrong kind); the parser's message names the line, the key and what was
    /// expected.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value of a run configuration is impossible; found before any work starts.
    #[error("{file}: {}{key} = {value}: {allowed}", table_prefix(.table))]
    Invalid {
        /// The file (or "run configuration" when built in code).
        file: String,
        /// The TOML table (`stage2`, `lora`, …; empty for top-level keys).
        table: &'static str,
        /// The key as written in the file.
        key: &'static str,
        /// The value found.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// One Stage II step needs more memory than the limit, found before any stage starts.
    #[error(
        "{file}: one Stage II step needs {estimate}, more than the {limit_gib:.2} GiB {limit_source}; lower [data] \
         ctx_len ({ctx_len}) or [stage2] batch_size ({batch_size}), recompute the student's layers in the backward \
         ([stage2] recompute = true{recompute}), compute in bf16, or set the limit yourself (--memory-limit GiB; \
         --no-memory-check skips this)"
    )]
    Memory {
        /// The configuration.
        file: String,
        /// The estimate with its parts ([`resa_tune::MemoryEstimate`]'s text).
        estimate: String,
        /// The bound, bytes.
        needed: u64,
        /// The limit, GiB.
        limit_gib: f64,
        /// Where the limit comes from ("available on this machine (MemAvailable)", "given").
        limit_source: String,
        /// `[data] ctx_len`.
        ctx_len: usize,
        /// `[stage2] batch_size`.
        batch_size: usize,
        /// What `[stage2] recompute = true` would need (": 7.41 GiB by the bound, within the
        /// limit"), or why it does not apply.
        recompute: String,
    },
    /// An experiment file (`configs/NAME.toml`) is inconsistent.
    #[error("{path}: {message}")]
    Experiment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An argument of a stage is impossible (an unknown workload or experiment name, a
    /// missing asset).
    #[error("{0}")]
    Usage(String),
    /// A value the run made could not be written out in a file format (JSON, TOML).
    #[error("{what} cannot be written as {format}: {message}")]
    Serialize {
        /// What was being written ("run.json", "the run configuration").
        what: String,
        /// The format ("JSON", "TOML").
        format: &'static str,
        /// The serialiser's message.
        message: String,
    },
    /// A folder of an SAE directory is not named after a hookpoint of the model.
    #[error("SAE folder {path}: {message}")]
    SaeFolder {
        /// The folder.
        path: PathBuf,
        /// Why its name is not a hookpoint of the model.
        message: String,
    },
    /// No TrueType font for the figures' text.
    #[error("no TrueType font for the figures' text (tried $RESA_FONT and {tried}); set RESA_FONT to a .ttf file")]
    NoFont {
        /// The paths tried after `$RESA_FONT`.
        tried: String,
    },
    /// The rows of a data source cannot give what the run needs (worked solutions for the
    /// template, one whole chunk of the context length).
    #[error("{data}: {message}")]
    Rows {
        /// The data source as given (file, folder, registry name or hub id).
        data: String,
        /// What is missing and how to fix it.
        message: String,
    },
    /// A model's tokenizer lacks what a stage needs (an end-of-sequence token, a marker).
    #[error("the tokenizer of {model}: {message}")]
    Tokenizer {
        /// The model folder.
        model: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A benchmark workload (`resa bench`) could not run or measured something other than
    /// its work (a decode that stopped early, a server that did not answer).
    #[error("benchmark workload {workload}: {message}")]
    Benchmark {
        /// The workload (`prefill`, `serve_c8`, …).
        workload: String,
        /// What went wrong.
        message: String,
    },
    /// A defect of resa: a state the code should never reach (please report it).
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// Model errors (loading, hookpoints, shapes, generation).
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
    /// SAE errors (Stage I, loading).
    #[error(transparent)]
    Sae(#[from] resa_sae::Error),
    /// Adapter errors.
    #[error(transparent)]
    Lora(#[from] resa_lora::Error),
    /// Data errors.
    #[error(transparent)]
    Data(#[from] resa_data::Error),
    /// Stage II and full-parameter training errors.
    #[error(transparent)]
    Tune(#[from] resa_tune::Error),
    /// Evaluation errors.
    #[error(transparent)]
    Eval(#[from] resa_eval::Error),
    /// Feature-analysis and figure errors.
    #[error(transparent)]
    Features(#[from] resa_features::Error),
}

/// `[stage2] ` for a table, nothing for a top-level key.
fn table_prefix(table: &str) -> String {
    if table.is_empty() { String::new() } else { format!("[{table}] ") }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }

    /// `what` could not be serialised as JSON.
    pub fn json(what: &str, cause: serde_json::Error) -> Self {
        Error::Serialize { what: what.to_string(), format: "JSON", message: cause.to_string() }
    }
}

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
