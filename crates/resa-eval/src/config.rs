//! The generation settings of an evaluation.

use resa_qwen2::Sampling;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Generation settings of an evaluation. The defaults are the paper's: temperature 0.6,
/// top-p 0.95, up to 32768 new tokens, one sample per problem, chat template on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Token choice.
    pub sampling: Sampling,
    /// Upper bound on new tokens per completion.
    pub max_new_tokens: usize,
    /// Samples per problem (Pass@1 is their mean correctness).
    pub samples: usize,
    /// Base seed; sample `s` of problem `id` uses a seed derived from `(seed, id, s)`.
    pub seed: u64,
    /// Prompts generated together.
    pub batch_size: usize,
    /// Render prompts with the tokenizer's chat template (otherwise the raw message).
    pub chat: bool,
    /// An optional system message before the user's.
    pub system_prompt: Option<String>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            sampling: Sampling::Sample { temperature: 0.6, top_p: 0.95, top_k: None },
            max_new_tokens: 32768,
            samples: 1,
            seed: 0,
            batch_size: 8,
            chat: true,
            system_prompt: None,
        }
    }
}

impl EvalConfig {
    /// Checks every setting (samples, token budget, batch size, sampling parameters) before any
    /// generation; [`evaluate`](crate::evaluate) calls it too.
    pub fn validate(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(Error::Config { field: "samples", message: "must be at least 1".into() });
        }
        if self.batch_size == 0 {
            return Err(Error::Config { field: "batch_size", message: "must be at least 1".into() });
        }
        if self.max_new_tokens == 0 {
            return Err(Error::Config { field: "max_new_tokens", message: "must be at least 1".into() });
        }
        Ok(())
    }

    /// The settings that decide what a completion is; two runs may share an output folder
    /// only when these agree (samples and batch size may differ).
    pub(crate) fn generation_key(&self) -> serde_json::Value {
        serde_json::json!({
            "sampling": self.sampling,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "chat": self.chat,
            "system_prompt": self.system_prompt,
        })
    }
}
