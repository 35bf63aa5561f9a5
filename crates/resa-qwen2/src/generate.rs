//! Autoregressive generation with a KV cache: batched prompts of different lengths (left
//! padding, as transformers' `generate` pads decoder-only models), greedy or sampled
//! decoding (temperature, top-k, top-p), seedable, stopping on stop ids or a token budget.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::model::{ForwardInput, KvCache, Logits, Qwen2ForCausalLM};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// The most likely token (the first one on ties, as `torch.argmax`).
    Greedy,
    /// Sampling from the softmax of `logits / temperature`, restricted to the `top_k` most
    /// likely tokens and to the smallest set whose probability reaches `top_p`
    /// (transformers' warpers, applied in that order).
    Sample {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Nucleus mass in (0, 1]; 1 disables it.
        top_p: f32,
        /// Keep only the k most likely tokens; `None` disables it.
        top_k: Option<usize>,
    },
}

/// Settings of one [`generate`] call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Upper bound on new tokens per sequence.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// Seed of the sampler (ignored by greedy decoding).
    pub seed: u64,
    /// A sequence ends after producing any of these ids (the id is kept in the output).
    pub stop_token_ids: Vec<u32>,
    /// Id used for left padding and after a sequence has stopped.
    pub pad_token_id: u32,
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens`, stopping on `stop_token_ids`.
    pub fn greedy(max_new_tokens: usize, stop_token_ids: Vec<u32>) -> Self {
        let pad_token_id = stop_token_ids.first().copied().unwrap_or(0);
        GenerationConfig { max_new_tokens, sampling: Sampling::Greedy, seed: 0, stop_token_ids, pad_token_id }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(Error::Input {
                field: "max_new_tokens",
                message: "must be at least 1 (0 would generate nothing)".into(),
            });
        }
        if let Sampling::Sample { temperature, top_p, top_k } = self.sampling {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::Input {
                    field: "temperature",
                    message: format!("must be positive, got {temperature}"),
                });
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(Error::Input { field: "top_p", message: format!("must be in (0, 1], got {top_p}") });
            }
            if top_k == Some(0) {
                return Err(Error::Input { field: "top_k", message: "must be at least 1".into() });
            }
        }
        Ok(())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    /// It produced this stop id.
    Stop(u32),
    /// It reached `max_new_tokens`.
    MaxTokens,
}

/// The continuation of one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// New token ids (the stop id included when the sequence stopped on one).
    pub ids: Vec<u32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// Chooses the next token from one row of logits.
pub fn sample_token(logits: &[f32], sampling: Sampling, rng: &mut StdRng) -> u32 {
    let argmax = |xs: &[f32]| {
        let mut best = 0;
        for (i, &x) in xs.iter().enumerate() {
            if x > xs[best] || (xs[best].is_nan() && !x.is_nan()) {
                best = i;
            }
        }
        best as u32
    };
    let Sampling::Sample { temperature, top_p, top_k } = sampling else {
        return argmax(logits);
    };
    let mut scored: Vec<(f32, u32)> = logits.iter().enumerate().map(|(i, &l)| (l / temperature, i as u32)).collect();
    // Descending by score, ties by id (stable).
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    if let Some(k) = top_k {
        scored.truncate(k.max(1));
    }
    let max = scored[0].0;
    let mut probs: Vec<f32> = scored.iter().map(|(s, _)| (s - max).exp()).collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if top_p < 1.0 {
        // transformers: drop the tokens whose ascending cumulative mass is <= 1 - top_p,
        // always keeping the most likely one.
        let mut keep = probs.len();
        let mut ascending = 0.0f32;
        for i in (1..probs.len()).rev() {
            ascending += probs[i];
            if ascending <= 1.0 - top_p {
                keep = i;
            } else {
                break;
            }
        }
        scored.truncate(keep);
        probs.truncate(keep);
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u: f32 = rng.random();
    let mut acc = 0.0;
    for (p, (_, id)) in probs.iter().zip(&scored) {
        acc += p;
        if u < acc {
            return *id;
        }
    }
    scored[scored.len() - 1].1
}

/// Generates continuations of a batch of prompts (token ids, any lengths). One sampler,
/// seeded with `cfg.seed`, serves the whole batch row by row.
pub fn generate<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
) -> Result<Vec<Generated>> {
    generate_with_prefill_chunk(model, prompts, cfg, PREFILL_CHUNK)
}

/// Prompt tokens per prefill forward: a longer prompt goes through the model in pieces of
/// this many tokens with the KV cache, so attention scores never take more than
/// `batch × heads × PREFILL_CHUNK × prompt` values (a 30,000-token prompt at 1.5B shapes:
/// 1.5 GB instead of 43 GB).
pub const PREFILL_CHUNK: usize = 1024;

/// [`generate`] with prompts prefilled `chunk` tokens at a time (`usize::MAX`: in one
/// forward). The continuations equal the one-forward prefill's up to floating-point
/// rounding.
pub fn generate_with_prefill_chunk<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    chunk: usize,
) -> Result<Vec<Generated>> {
    generate_inner(model, prompts, cfg, Samplers::Shared(Box::new(StdRng::seed_from_u64(cfg.seed))), chunk)
}

/// Like [`generate`], but every prompt has its own sampler seeded with `seeds[i]`
/// (`cfg.seed` is ignored), so a sequence does not depend on which other prompts share its
/// batch: an evaluation can be batched differently, or resumed, and give the same samples
/// (up to the backend's floating-point differences between batch shapes). On a CPU backend
/// (flex, ndarray) the two halves of the batch decode at once, each on its own core, padded
/// as the whole batch is.
pub fn generate_seeded<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    cfg: &GenerationConfig,
) -> Result<Vec<Generated>> {
    if seeds.len() != prompts.len() {
        return Err(Error::Input {
            field: "seeds",
            message: format!("{} seeds for {} prompts", seeds.len(), prompts.len()),
        });
    }
    let samplers = Samplers::PerRow(seeds.iter().map(|&s| StdRng::seed_from_u64(s)).collect());
    generate_inner(model, prompts, cfg, samplers, PREFILL_CHUNK)
}

enum Samplers {
    Shared(Box<StdRng>),
    PerRow(Vec<StdRng>),
}

impl Samplers {
    fn row(&mut self, r: usize) -> &mut StdRng {
        match self {
            Samplers::Shared(rng) => rng,
            Samplers::PerRow(rngs) => &mut rngs[r],
        }
    }
}

fn generate_inner<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    samplers: Samplers,
    prefill_chunk: usize,
) -> Result<Vec<Generated>> {
    cfg.validate()?;
    if prefill_chunk == 0 {
        return Err(Error::Input {
            field: "prefill_chunk",
            message: "the prefill chunk must be at least one token".into(),
        });
    }
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let vocab = model.config().vocab_size;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(Error::Input { field: "prompts", message: format!("prompt {i} is empty") });
        }
        if let Some(&bad) = p.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input {
                field: "prompts",
                message: format!("prompt {i} holds id {bad}, outside the vocabulary of {vocab}"),
            });
        }
        let limit = model.config().max_position_embeddings;
        if p.len() >= limit {
            return Err(Error::Input {
                field: "prompts",
                message: format!(
                    "prompt {i} has {} tokens; the model has {limit} positions (max_position_embeddings), \
                 so at most {} prompt tokens leave room for one new token",
                    p.len(),
                    limit - 1
                ),
            });
        }
    }
    let rows = Padded::new(prompts, cfg.pad_token_id);
    let b = prompts.len();
    match samplers {
        // Rows with samplers of their own do not depend on each other: on a CPU backend the
        // two halves of the batch decode at once (each with the padding of the whole batch),
        // a small model's operations being too small to share between threads.
        Samplers::PerRow(mut rngs) if b >= 2 && crate::on_host::<B>(&model.device()) => {
            let half = b.div_ceil(2);
            let second = Samplers::PerRow(rngs.split_off(half));
            let first = Samplers::PerRow(rngs);
            let (a, z) = rayon::join(
                || decode(model, &rows, 0..half, cfg, first, prefill_chunk),
                || decode(model, &rows, half..b, cfg, second, prefill_chunk),
            );
            let mut out = a?;
            out.extend(z?);
            Ok(out)
        }
        samplers => decode(model, &rows, 0..b, cfg, samplers, prefill_chunk),
    }
}

/// The prompts of a batch left-padded to its longest, as transformers pads them.
struct Padded<'p> {
    prompts: &'p [Vec<u32>],
    /// The longest prompt.
    len: usize,
    /// Whether any prompt is shorter than `len` (then the forward takes a mask).
    padded: bool,
    /// `[b, len]` ids, mask and positions, row-major.
    ids: Vec<i64>,
    mask: Vec<bool>,
    positions: Vec<i64>,
}

impl<'p> Padded<'p> {
    fn new(prompts: &'p [Vec<u32>], pad_token_id: u32) -> Self {
        let b = prompts.len();
        let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * len);
        let mut mask = Vec::with_capacity(b * len);
        let mut positions = Vec::with_capacity(b * len);
        for p in prompts {
            let pad = len - p.len();
            ids.extend(std::iter::repeat_n(i64::from(pad_token_id), pad).chain(p.iter().map(|&t| i64::from(t))));
            mask.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
            // transformers: position_ids = cumsum(mask) - 1, padding positions set to 1.
            positions.extend(std::iter::repeat_n(1i64, pad).chain(0..p.len() as i64));
        }
        let padded = prompts.iter().any(|p| p.len() != len);
        Padded { prompts, len, padded, ids, mask, positions }
    }

    /// Columns `from..to` of rows `rows` of a row-major `[b, len]` buffer.
    fn columns<T: Copy>(&self, v: &[T], rows: &Range<usize>, from: usize, to: usize) -> Vec<T> {
        v[rows.start * self.len..rows.end * self.len]
            .chunks_exact(self.len)
            .flat_map(|row| row[from..to].iter().copied())
            .collect()
    }
}

/// Generates for rows `rows` of the padded batch; `samplers` index from the range's start.
fn decode<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    batch: &Padded<'_>,
    rows: Range<usize>,
    cfg: &GenerationConfig,
    mut samplers: Samplers,
    prefill_chunk: usize,
) -> Result<Vec<Generated>> {
    let vocab = model.config().vocab_size;
    let Padded { prompts, len, padded, .. } = *batch;
    let prompts = &prompts[rows.clone()];
    let device = model.device();
    let b = prompts.len();
    let next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    // Prompt tokens `from..to`, seeing the cache of `0..from`.
    let piece = |from: usize, to: usize| {
        let mut input = ForwardInput::new(Tensor::<B, 2, Int>::from_data(
            TensorData::new(batch.columns(&batch.ids, &rows, from, to), [b, to - from]),
            &device,
        ))
        .with_logits(Logits::Last);
        if padded {
            input = input.with_mask(
                Tensor::<B, 2, Bool>::from_data(
                    TensorData::new(batch.columns(&batch.mask, &rows, 0, to), [b, to]),
                    &device,
                ),
                Tensor::<B, 2, Int>::from_data(
                    TensorData::new(batch.columns(&batch.positions, &rows, from, to), [b, to - from]),
                    &device,
                ),
            );
        }
        input
    };
    let mut cache = KvCache::new(model.config().num_hidden_layers);
    let hooks = Hooks::default();
    // All but the last piece of the prompt fill the cache; the last gives the first logits.
    let last = (len - 1) / prefill_chunk * prefill_chunk;
    for from in (0..last).step_by(prefill_chunk) {
        model.forward(piece(from, from + prefill_chunk), &hooks, Some(&mut cache))?;
    }
    let mut input = piece(last, len);
    let mut out: Vec<Generated> =
        (0..b).map(|_| Generated { ids: Vec::new(), finish_reason: FinishReason::MaxTokens }).collect();
    let mut done = vec![false; b];
    // The original row of each batch slot: a sequence that stops leaves the batch (its cache
    // rows are dropped), so the steps after it cost only what the others need.
    let mut active: Vec<usize> = (0..b).collect();
    for step in 0..cfg.max_new_tokens {
        let logits = model
            .forward(input, &hooks, Some(&mut cache))?
            .logits
            .ok_or_else(|| Error::Internal("forward returned no logits".into()))?;
        let data = logits.reshape([active.len(), vocab]).into_data().convert::<f32>();
        let rows = data.to_vec::<f32>().map_err(|e| Error::Internal(format!("logits not readable: {e:?}")))?;
        let mut next = Vec::with_capacity(active.len());
        for (slot, row) in rows.chunks_exact(vocab).enumerate() {
            let r = active[slot];
            let tok = sample_token(row, cfg.sampling, samplers.row(r));
            out[r].ids.push(tok);
            if cfg.stop_token_ids.contains(&tok) {
                out[r].finish_reason = FinishReason::Stop(tok);
                done[r] = true;
            }
            next.push(tok);
        }
        if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let keep: Vec<usize> = (0..active.len()).filter(|&slot| !done[active[slot]]).collect();
        if keep.len() < active.len() {
            cache.retain_rows(&keep);
            next = keep.iter().map(|&slot| next[slot]).collect();
            active = keep.iter().map(|&slot| active[slot]).collect();
        }
        let n = active.len();
        let ids: Vec<i64> = next.iter().map(|&t| i64::from(t)).collect();
        input = ForwardInput::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, 1]), &device))
            .with_logits(Logits::Last);
        if padded {
            let t = cache.len() + 1;
            // Row-major [n, t]: rebuild from the per-row history.
            let hist: Vec<bool> = active
                .iter()
                .flat_map(|&r| {
                    let pad = len - prompts[r].len();
                    (0..t).map(move |j| j >= pad)
                })
                .collect();
            let pos: Vec<i64> = active.iter().map(|&r| next_pos[r] + step as i64).collect();
            input = input.with_mask(
                Tensor::<B, 2, Bool>::from_data(TensorData::new(hist, [n, t]), &device),
                Tensor::<B, 2, Int>::from_data(TensorData::new(pos, [n, 1]), &device),
            );
        }
    }
    Ok(out)
}

/// The ids a completion stops on: the model's `eos_token_id`s (its `config.json`) and the
/// tokenizer's EOS, sorted and deduplicated. The evaluation engines and the server use it.
pub fn stop_token_ids(model_eos: &[u32], tokenizer: &crate::tokenizer::Tokenizer) -> Vec<u32> {
    let mut stop = model_eos.to_vec();
    stop.extend(tokenizer.eos_token_id());
    stop.sort_unstable();
    stop.dedup();
    stop
}

/// A prompt's continuation with its decoded text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedText {
    /// Ids and finish reason.
    pub generated: Generated,
    /// The new tokens decoded, special tokens skipped.
    pub text: String,
}

/// Tokenises text prompts (through the chat template as one user message when `chat`),
/// generates, and decodes. The tokenizer's EOS id is added to the stop ids and, when the
/// config names no padding id of its own, used for padding.
pub fn generate_text<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    tokenizer: &crate::tokenizer::Tokenizer,
    prompts: &[&str],
    chat: bool,
    cfg: &GenerationConfig,
) -> Result<Vec<GeneratedText>> {
    let ids = prompts
        .iter()
        .map(|p| {
            if chat {
                tokenizer.encode_chat(&[crate::tokenizer::ChatMessage::user(*p)], true)
            } else {
                tokenizer.encode(p, true)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut cfg = cfg.clone();
    if let Some(eos) = tokenizer.eos_token_id()
        && !cfg.stop_token_ids.contains(&eos)
    {
        cfg.stop_token_ids.push(eos);
    }
    generate(model, &ids, &cfg)?
        .into_iter()
        .map(|g| Ok(GeneratedText { text: tokenizer.decode(&g.ids, true)?, generated: g }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(sample_token(&[0.0, 2.0, 2.0, -1.0], Sampling::Greedy, &mut rng), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = Sampling::Sample { temperature: 0.7, top_p: 1.0, top_k: Some(1) };
        for _ in 0..20 {
            assert_eq!(sample_token(&[0.1, 0.3, 5.0, 0.2], s, &mut rng), 2);
        }
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probabilities ~ [0.66, 0.24, 0.09, 0.01]; top_p 0.8 keeps the first two.
        let logits = [2.0f32, 1.0, 0.0, -2.0];
        let s = Sampling::Sample { temperature: 1.0, top_p: 0.8, top_k: None };
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[sample_token(&logits, s, &mut rng) as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 300, "{seen:?}");
    }

    #[test]
    fn sampling_is_seeded() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let s = Sampling::Sample { temperature: 1.0, top_p: 0.95, top_k: None };
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..30).map(|_| sample_token(&logits, s, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
