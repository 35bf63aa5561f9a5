//! Where completions come from: an [`Engine`] turns prompts into completions. The runner
//! ([`crate::evaluate_with`]) owns everything else — prompts, seeds, the resumable
//! `completions.jsonl`, grading and the report — so every engine is evaluated identically.
//! [`LocalEngine`] decodes with this project's generator; [`crate::openai::OpenAiEngine`]
//! sends the same tokens to any OpenAI-compatible server (vLLM, SGLang, TGI, `resa serve`).

use resa_qwen2::burn::tensor::backend::Backend;
use resa_qwen2::{FinishReason, GenerationConfig, Qwen2ForCausalLM, Tokenizer, generate_seeded};
use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;
use crate::error::Result;

/// One completion to generate.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Benchmark.
    pub bench: &'a str,
    /// Problem id.
    pub id: &'a str,
    /// Sample index.
    pub sample: usize,
    /// The prompt text (chat template applied).
    pub prompt: &'a str,
    /// The prompt's token ids (the text encoded without added special tokens).
    pub prompt_ids: &'a [u32],
    /// The sampler's seed for this (problem, sample).
    pub seed: u64,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// A stop token ended it.
    Stop,
    /// The token budget did.
    Length,
}

impl Finish {
    /// `stop` or `length`, as OpenAI's `finish_reason` and `completions.jsonl` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What an engine returns for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The generated text, special tokens kept, the final stop token left out.
    pub text: String,
    /// Generated tokens, the stop token included.
    pub new_tokens: usize,
    /// Why it ended.
    pub finish: Finish,
}

/// Turns requests into completions.
pub trait Engine {
    /// How many requests the runner hands to one [`Engine::generate`] call (the local batch;
    /// a server client takes all that are pending and bounds its own concurrency).
    fn chunk_size(&self) -> usize;

    /// Generates `requests` under `cfg`'s sampling settings, calling `done(i, completion)`
    /// for `requests[i]` as each finishes, in any order. Completions reported before an
    /// error are kept by the runner, so a failed call loses nothing that was finished.
    fn generate(
        &mut self,
        requests: &[Request<'_>],
        cfg: &EvalConfig,
        done: &mut dyn FnMut(usize, Completion) -> Result<()>,
    ) -> Result<()>;

    /// A short description for logs (`local`, `openai http://…/v1 (model)`).
    fn describe(&self) -> String;
}

/// The ids a completion stops on (every engine gets the same list).
pub use resa_qwen2::stop_token_ids;

/// Decodes generated ids as the runner records them: the final stop token left out, special
/// tokens kept.
pub fn completion_of(tokenizer: &Tokenizer, ids: &[u32], reason: FinishReason) -> Result<Completion> {
    let (body, finish) = match reason {
        FinishReason::Stop(_) => (&ids[..ids.len().saturating_sub(1)], Finish::Stop),
        FinishReason::MaxTokens => (ids, Finish::Length),
    };
    Ok(Completion { text: tokenizer.decode(body, false)?, new_tokens: ids.len(), finish })
}

/// This project's generator on a loaded model: static batches of `batch_size` with one
/// sampler per request ([`generate_seeded`]).
pub struct LocalEngine<'m, B: Backend> {
    model: &'m Qwen2ForCausalLM<B>,
    tokenizer: &'m Tokenizer,
    batch_size: usize,
}

impl<'m, B: Backend> LocalEngine<'m, B> {
    /// The engine over `model` and its tokenizer.
    pub fn new(model: &'m Qwen2ForCausalLM<B>, tokenizer: &'m Tokenizer, batch_size: usize) -> Self {
        LocalEngine { model, tokenizer, batch_size: batch_size.max(1) }
    }

    fn generation_config(&self, cfg: &EvalConfig) -> GenerationConfig {
        let stop = stop_token_ids(&self.model.config().eos_token_ids, self.tokenizer);
        let pad = self.tokenizer.pad_token_id().or(stop.first().copied()).unwrap_or(0);
        GenerationConfig {
            max_new_tokens: cfg.max_new_tokens,
            sampling: cfg.sampling,
            seed: cfg.seed,
            stop_token_ids: stop,
            pad_token_id: pad,
        }
    }
}

impl<B: Backend> Engine for LocalEngine<'_, B> {
    fn chunk_size(&self) -> usize {
        self.batch_size
    }

    fn generate(
        &mut self,
        requests: &[Request<'_>],
        cfg: &EvalConfig,
        done: &mut dyn FnMut(usize, Completion) -> Result<()>,
    ) -> Result<()> {
        let gen_cfg = self.generation_config(cfg);
        for (b, batch) in requests.chunks(self.batch_size).enumerate() {
            let ids: Vec<Vec<u32>> = batch.iter().map(|r| r.prompt_ids.to_vec()).collect();
            let seeds: Vec<u64> = batch.iter().map(|r| r.seed).collect();
            let outs = generate_seeded(self.model, &ids, &seeds, &gen_cfg)?;
            for (j, out) in outs.into_iter().enumerate() {
                done(b * self.batch_size + j, completion_of(self.tokenizer, &out.ids, out.finish_reason)?)?;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "local".into()
    }
}
