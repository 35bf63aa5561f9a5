//! Errors of the Qwen2 crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, configuring or running a Qwen2 model.
///
/// Variants carry the offending file, key or field together with what was expected and
/// what was found, so that the message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor holds NaN or an infinity (checked when SAEs and adapters load).
    #[error(
        "{path}: tensor `{key}` holds a non-finite value ({value}) at element {index}; the file is corrupt or the training diverged"
    )]
    NonFinite {
        /// The tensor.
        key: String,
        /// The file.
        path: PathBuf,
        /// Flat index of the first bad element.
        index: usize,
        /// The value found.
        value: f32,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also exposed as `source()`).
        cause: std::io::Error,
    },

    /// A JSON file is not valid JSON or does not have the expected structure.
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error (with line and column), shown in the message.
        cause: serde_json::Error,
    },

    /// A configuration field holds a value the model cannot run with.
    #[error("config field `{field}`: expected {expected}, found {found}")]
    Config {
        /// The field of `config.json`, e.g. `hidden_act`.
        field: String,
        /// What the model accepts.
        expected: String,
        /// What the file holds.
        found: String,
    },

    /// A safetensors file is malformed (header, dtype or offsets).
    #[error("{path}: malformed safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor `{key}` is missing from the checkpoint in {path}")]
    MissingTensor {
        /// The checkpoint key, e.g. `model.layers.3.self_attn.q_proj.weight`.
        key: String,
        /// The checkpoint folder or file.
        path: PathBuf,
    },

    /// The checkpoint holds a tensor that the model does not have.
    #[error("unexpected tensor `{key}` in the checkpoint in {path} (not part of a Qwen2 model with this config)")]
    UnexpectedTensor {
        /// The checkpoint key.
        key: String,
        /// The checkpoint folder or file.
        path: PathBuf,
    },

    /// A tensor has the wrong shape.
    #[error("tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint key.
        key: String,
        /// Shape required by the config.
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },

    /// A tensor is stored with a dtype this crate cannot convert (for this use).
    #[error("tensor `{key}` in {path} has dtype {dtype}; expected {expected}")]
    UnsupportedDtype {
        /// The checkpoint key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The dtype named in the header.
        dtype: String,
        /// What the reader accepts here.
        expected: &'static str,
    },

    /// A hookpoint name does not parse or names a layer the model does not have.
    #[error("invalid hookpoint `{name}`: {reason}")]
    Hookpoint {
        /// The name as given.
        name: String,
        /// Why it is rejected.
        reason: String,
    },

    /// The splice at a hookpoint failed (for an SAE: it reads another width).
    #[error("the splice at {at} failed: {cause}")]
    Splice {
        /// Where: the hookpoint's name (`layers.12`).
        at: String,
        /// The splice's own error.
        cause: SpliceError,
    },

    /// An argument (input ids, a mask, a prompt, a generation setting) has an impossible
    /// shape or value.
    #[error("invalid `{field}`: {message}")]
    Input {
        /// The argument or setting.
        field: &'static str,
        /// What is wrong with it and what was expected.
        message: String,
    },

    /// Something this crate expected of its own computation did not hold (a bug: please
    /// report it with the message).
    #[error("internal error: {0}")]
    Internal(String),

    /// The tokenizer could not be loaded or failed to encode or decode.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },

    /// The chat template could not be compiled or rendered.
    #[error("chat template from {path}: {message}")]
    ChatTemplate {
        /// The `tokenizer_config.json` holding the template.
        path: PathBuf,
        /// The template engine's message.
        message: String,
    },

    /// A model could not be fetched from the Hugging Face hub.
    #[error("could not get `{file}` of `{repo}` from the Hugging Face hub: {message}")]
    Hub {
        /// The repository id, e.g. `deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`.
        repo: String,
        /// The file asked for.
        file: String,
        /// What went wrong (offline, not found, ...).
        message: String,
    },
}

/// Why a [`Splice`](crate::Splice) could not replace an activation (its own error, boxed).
pub type SpliceError = Box<dyn std::error::Error + Send + Sync>;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause: source }
    }

    pub(crate) fn config(field: impl Into<String>, expected: impl Into<String>, found: impl std::fmt::Display) -> Self {
        Error::Config { field: field.into(), expected: expected.into(), found: found.to_string() }
    }
}

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
