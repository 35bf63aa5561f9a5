//! Continuous batching: sequences join a batch being decoded between steps and leave it when
//! they finish, so one long completion does not hold the others' places (a server admits new
//! requests as old ones end). Each sequence has its own sampler and settings; a joining
//! prompt is prefilled alone and its cache aligned with the batch's by masked left padding.
//! A sequence decodes as [`crate::generate_seeded`] decodes it alone, up to the backend's
//! floating-point differences between batch shapes.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use rand::{SeedableRng, rngs::StdRng};

use crate::error::{Error, Result};
use crate::generate::{FinishReason, Generated, GenerationConfig, PREFILL_CHUNK, sample_token};
use crate::hooks::Hooks;
use crate::model::{ForwardInput, KvCache, Logits, Qwen2ForCausalLM};

/// One sequence to decode: its prompt, seed and settings (`cfg.seed` and `cfg.pad_token_id`
/// are not used).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Seed of its sampler.
    pub seed: u64,
    /// Token budget, sampling and stop ids.
    pub cfg: GenerationConfig,
}

struct Row<T> {
    tag: T,
    /// Leading cache positions of this row that hold no token (masked).
    pad: usize,
    next_pos: i64,
    last: u32,
    rng: StdRng,
    out: Generated,
    cfg: GenerationConfig,
}

/// A batch being decoded; `T` tags each sequence (a reply channel, an index).
pub struct BatchDecoder<B: Backend, T> {
    cache: Option<KvCache<B>>,
    rows: Vec<Row<T>>,
}

impl<B: Backend, T> Default for BatchDecoder<B, T> {
    fn default() -> Self {
        BatchDecoder { cache: None, rows: Vec::new() }
    }
}

impl<B: Backend, T> BatchDecoder<B, T> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sequences being decoded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no sequence is being decoded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Prefills `req`'s prompt alone on `model` and chooses its first token; a sequence that
    /// ends there (a stop id, a budget of one) is returned, any other joins the batch. A
    /// request that cannot be decoded is refused with its tag.
    #[allow(clippy::type_complexity)]
    pub fn add(
        &mut self,
        model: &Qwen2ForCausalLM<B>,
        tag: T,
        req: DecodeRequest,
    ) -> std::result::Result<Option<(T, Generated)>, (T, Error)> {
        match self.prefill(model, &req) {
            Ok((tok, rng, cache)) => Ok(self.join(tag, req, tok, rng, cache)),
            Err(e) => Err((tag, e)),
        }
    }

    fn prefill(&self, model: &Qwen2ForCausalLM<B>, req: &DecodeRequest) -> Result<(u32, StdRng, KvCache<B>)> {
        req.cfg.validate()?;
        let p = req.prompt.len();
        let vocab = model.config().vocab_size;
        if p == 0 {
            return Err(Error::Input { field: "prompt", message: "the prompt is empty".into() });
        }
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input {
                field: "prompt",
                message: format!("the prompt holds id {bad}, outside the vocabulary of {vocab}"),
            });
        }
        let limit = model.config().max_position_embeddings;
        if p >= limit {
            return Err(Error::Input {
                field: "prompt",
                message: format!("the prompt has {p} tokens; the model has {limit} positions"),
            });
        }
        let device = model.device();
        let mut cache = KvCache::new(model.config().num_hidden_layers);
        let hooks = Hooks::default();
        let piece = |from: usize, to: usize| {
            let ids: Vec<i64> = req.prompt[from..to].iter().map(|&t| i64::from(t)).collect();
            ForwardInput::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, to - from]), &device))
                .with_logits(Logits::Last)
        };
        let last = (p - 1) / PREFILL_CHUNK * PREFILL_CHUNK;
        for from in (0..last).step_by(PREFILL_CHUNK) {
            model.forward(piece(from, from + PREFILL_CHUNK), &hooks, Some(&mut cache))?;
        }
        let logits = model
            .forward(piece(last, p), &hooks, Some(&mut cache))?
            .logits
            .ok_or_else(|| Error::Internal("forward returned no logits".into()))?;
        let row = logits.reshape([vocab]).into_data().convert::<f32>();
        let row = row.to_vec::<f32>().map_err(|e| Error::Internal(format!("logits not readable: {e:?}")))?;
        let mut rng = StdRng::seed_from_u64(req.seed);
        let tok = sample_token(&row, req.cfg.sampling, &mut rng);
        Ok((tok, rng, cache))
    }

    fn join(
        &mut self,
        tag: T,
        req: DecodeRequest,
        tok: u32,
        rng: StdRng,
        mut cache: KvCache<B>,
    ) -> Option<(T, Generated)> {
        let p = req.prompt.len();
        let mut out = Generated { ids: vec![tok], finish_reason: FinishReason::MaxTokens };
        if req.cfg.stop_token_ids.contains(&tok) {
            out.finish_reason = FinishReason::Stop(tok);
            return Some((tag, out));
        }
        if req.cfg.max_new_tokens == 1 {
            return Some((tag, out));
        }
        let mut pad = 0;
        match self.cache.as_mut() {
            None => self.cache = Some(cache),
            Some(batch) => {
                let t = batch.len();
                if p <= t {
                    cache.pad_left(t - p);
                    pad = t - p;
                } else {
                    batch.pad_left(p - t);
                    self.rows.iter_mut().for_each(|r| r.pad += p - t);
                }
                batch.append_rows(cache);
            }
        }
        self.rows.push(Row { tag, pad, next_pos: p as i64, last: tok, rng, out, cfg: req.cfg });
        None
    }

    /// One decode step of every sequence in the batch; returns those that finished (they
    /// leave the batch).
    pub fn step(&mut self, model: &Qwen2ForCausalLM<B>) -> Result<Vec<(T, Generated)>> {
        let Some(cache) = self.cache.as_mut() else { return Ok(Vec::new()) };
        let n = self.rows.len();
        let vocab = model.config().vocab_size;
        let device = model.device();
        let t = cache.len() + 1;
        let ids: Vec<i64> = self.rows.iter().map(|r| i64::from(r.last)).collect();
        let mut input = ForwardInput::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, 1]), &device))
            .with_logits(Logits::Last);
        if self.rows.iter().any(|r| r.pad > 0) {
            let mask: Vec<bool> = self.rows.iter().flat_map(|r| (0..t).map(move |j| j >= r.pad)).collect();
            let pos: Vec<i64> = self.rows.iter().map(|r| r.next_pos).collect();
            input = input.with_mask(
                Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [n, t]), &device),
                Tensor::<B, 2, Int>::from_data(TensorData::new(pos, [n, 1]), &device),
            );
        }
        let logits = model
            .forward(input, &Hooks::default(), Some(cache))?
            .logits
            .ok_or_else(|| Error::Internal("forward returned no logits".into()))?;
        let data = logits.reshape([n, vocab]).into_data().convert::<f32>();
        let all = data.to_vec::<f32>().map_err(|e| Error::Internal(format!("logits not readable: {e:?}")))?;
        let mut finished = vec![false; n];
        for ((row, logits), done) in self.rows.iter_mut().zip(all.chunks_exact(vocab)).zip(finished.iter_mut()) {
            let tok = sample_token(logits, row.cfg.sampling, &mut row.rng);
            row.out.ids.push(tok);
            row.last = tok;
            row.next_pos += 1;
            if row.cfg.stop_token_ids.contains(&tok) {
                row.out.finish_reason = FinishReason::Stop(tok);
                *done = true;
            } else if row.out.ids.len() >= row.cfg.max_new_tokens {
                *done = true;
            }
        }
        Ok(self.remove(&finished))
    }

    /// Ends the sequences whose tag `gone` says nobody waits for any more (a client that went
    /// away) before their next step: their tags and what they had generated.
    pub fn cancel(&mut self, gone: impl Fn(&T) -> bool) -> Vec<(T, Generated)> {
        let remove: Vec<bool> = self.rows.iter().map(|r| gone(&r.tag)).collect();
        self.remove(&remove)
    }

    /// Takes the rows marked in `remove` out of the batch and its cache.
    fn remove(&mut self, remove: &[bool]) -> Vec<(T, Generated)> {
        if !remove.iter().any(|&d| d) {
            return Vec::new();
        }
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| !remove[i]).collect();
        let mut out = Vec::new();
        let mut kept = Vec::with_capacity(keep.len());
        for (row, done) in std::mem::take(&mut self.rows).into_iter().zip(remove) {
            if *done { out.push((row.tag, row.out)) } else { kept.push(row) }
        }
        self.rows = kept;
        let Some(cache) = self.cache.as_mut().filter(|_| !self.rows.is_empty()) else {
            self.cache = None;
            return out;
        };
        cache.retain_rows(&keep);
        // Padding every remaining row has is dropped.
        let common = self.rows.iter().map(|r| r.pad).min().unwrap_or(0);
        if common > 0 {
            cache.drop_leading(common);
            self.rows.iter_mut().for_each(|r| r.pad -= common);
        }
        out
    }

    /// Ends every sequence (after a failed step): their tags and what they had generated.
    pub fn drain(&mut self) -> Vec<(T, Generated)> {
        self.cache = None;
        std::mem::take(&mut self.rows).into_iter().map(|r| (r.tag, r.out)).collect()
    }
}
