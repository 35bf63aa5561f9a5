//! Errors of the trainer.

use std::path::PathBuf;

/// What can go wrong setting up or running Stage II or SFT.
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
    /// Model errors (loading, hookpoints, shapes).
    #[error(transparent)]
    Model(#[from] resa_qwen2::Error),
    /// SAE errors.
    #[error(transparent)]
    Sae(#[from] resa_sae::Error),
    /// Adapter errors.
    #[error(transparent)]
    Lora(#[from] resa_lora::Error),
    /// Data errors.
    #[error(transparent)]
    Data(#[from] resa_data::Error),
    /// An objective of one's own ([`crate::Objective`]) refuses the model or fails a step.
    #[error("objective `{objective}`: {message}")]
    Objective {
        /// The objective's [`crate::Objective::name`].
        objective: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A step produced something the trainer never expects (a forward without logits, a
    /// gradient that did not arrive): a defect of this program, not of the run's inputs.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// A record could not be written as JSON.
    #[error("{what} cannot be written as JSON: {cause}")]
    Json {
        /// What was being written (`run.json`, a metrics line, `trainer_state.json`).
        what: &'static str,
        /// The serializer's error.
        cause: String,
    },
    /// An option is impossible.
    #[error("invalid option `{option}`: {message}")]
    Options {
        /// The option.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite; training stopped (the last checkpoint is kept).
    #[error("training stopped at step {step}: the loss is {value} (not finite); the last good checkpoint is kept")]
    NonFiniteLoss {
        /// Optimizer step at which it happened (0-based).
        step: u64,
        /// The value.
        value: f32,
    },
    /// The replicas or nodes of a data-parallel run could not meet or sum their gradients
    /// (burn-collective: registration, the orchestrator, an all-reduce).
    #[error("data parallel: {0}")]
    Collective(String),
    /// A node of a multi-node run was lost during an all-reduce (killed, its network gone,
    /// or stopped by the loss of another): this node stops; starting every node again with
    /// `resume` goes on from the newest checkpoint all of them completed.
    #[error("{0}")]
    NodeLost(NodeLoss),
    /// A checkpoint does not match the run being resumed.
    #[error("cannot resume from {path}: {message}")]
    Resume {
        /// The checkpoint.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
}

/// What a node knows when another was lost ([`Error::NodeLost`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoss {
    /// The rank of the node whose connection closed, when known.
    pub rank: Option<u32>,
    /// Its tensor service's address, when known.
    pub address: Option<String>,
    /// Seconds waited without an answer (the node timeout), when the loss showed as silence.
    pub waited_secs: Option<u64>,
    /// The optimizer step whose all-reduce failed (0-based).
    pub step: u64,
    /// This node's newest complete checkpoint, if any.
    pub checkpoint: Option<PathBuf>,
    /// burn-collective's own error, when it gave one.
    pub detail: String,
}

impl std::fmt::Display for NodeLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.rank, &self.address, self.waited_secs) {
            // The peer whose connection closed: killed, its network gone, or stopped by the
            // loss of another node.
            (Some(rank), Some(a), _) => {
                write!(f, "lost node {rank} ({a}: killed, its network gone, or stopped by the loss of another)")?
            }
            (None, Some(a), _) => {
                write!(f, "lost the node at {a} (killed, its network gone, or stopped by the loss of another)")?
            }
            (_, None, Some(s)) => {
                write!(f, "no answer from the other nodes for {s} s (a node lost, or its network gone)")?
            }
            _ => write!(f, "a node was lost ({})", self.detail)?,
        }
        write!(
            f,
            " during the all-reduce of step {}; this node stops. Start every node again with the same command \
             (`resa tune` resumes; a library run needs `resume`): ",
            self.step + 1
        )?;
        match &self.checkpoint {
            Some(c) => write!(
                f,
                "they go on from the newest checkpoint all of them completed (this node's newest is {})",
                c.display()
            ),
            None => write!(f, "no checkpoint was written yet, so the run starts over"),
        }
    }
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
