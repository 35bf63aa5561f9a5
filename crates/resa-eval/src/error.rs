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
    /// An inference server did not answer (connection refused or reset, timeouts, HTTP 408,
    /// 429 or 5xx) after every retry.
    #[error(
        "the server at {endpoint} did not answer after {attempts} attempt(s): {cause} (is it running? the \
         completions finished so far are kept: run again to resume)"
    )]
    Unreachable {
        /// The base URL.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        cause: String,
    },
    /// The server does not serve the model asked for.
    #[error("the server at {endpoint} does not serve the model `{model}`; it serves: {}", served.join(", "))]
    ModelNotServed {
        /// The base URL.
        endpoint: String,
        /// The name asked for.
        model: String,
        /// The names it lists.
        served: Vec<String>,
    },
    /// A prompt and the token budget do not fit the served model's context.
    #[error(
        "{bench} {id}: {prompt_tokens} prompt tokens + max_tokens {max_tokens} exceed the context of the model \
         served at {endpoint}{}: lower --max-new-tokens (or serve with a longer context); the server said: {message}",
        max_model_len.map_or(String::new(), |n| format!(" ({n} tokens)"))
    )]
    ContextLength {
        /// The base URL.
        endpoint: String,
        /// Benchmark.
        bench: String,
        /// Problem id.
        id: String,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// The token budget asked for.
        max_tokens: usize,
        /// The served context length, when the server lists it.
        max_model_len: Option<usize>,
        /// The server's message.
        message: String,
    },
    /// The server refused a request or answered something that is not a completion.
    #[error("the server at {endpoint} answered HTTP {status}: {message}")]
    Server {
        /// The base URL.
        endpoint: String,
        /// HTTP status (200 when the answer was malformed).
        status: u16,
        /// Its message.
        message: String,
    },
    /// An inference server this program starts (vLLM) could not be started or never became
    /// ready.
    #[error("engine {engine}: {message}")]
    EngineStart {
        /// The engine (`vllm`).
        engine: &'static str,
        /// What happened, with the command and the end of the server's log where there are.
        message: String,
    },
    /// Tokenising, the chat template or generation failed.
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<resa_publish::Error> for Error {
    fn from(e: resa_publish::Error) -> Self {
        Error::Io { path: e.path, cause: e.cause }
    }
}
