//! Tokenised fixed-length chunks, exactly as sparsify's `chunk_and_tokenize` makes them for
//! both SAE-Tuning stages.
//!
//! Rows are taken in map batches of [`ChunkOptions::batch_rows`]; within a batch the texts are
//! joined by the EOS text with a leading EOS (`eos.join([""] + texts)`), tokenised, and cut
//! into pieces of `chunk_len − specials` tokens, each wrapped by the tokenizer's post-processor
//! (R1-Distill: BOS in front), so every chunk is `BOS` + 2047 tokens by default. The last
//! piece of each batch is dropped, full or not, as the reference does.
//!
//! Texts are tokenised one by one in parallel and concatenated: the EOS text is a special
//! added token, which the tokenizer splits out before normalising and pre-tokenising, so
//! this gives the same ids as tokenising the joined string.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// How texts become chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Tokens per chunk, specials included (sparsify's `max_seq_len`; default 2048).
    pub chunk_len: usize,
    /// Rows per map batch (the `datasets.map` batch size sparsify uses; default 2048).
    pub batch_rows: usize,
    /// The EOS token's text (from `tokenizer_config.json`; R1-Distill: `<｜end▁of▁sentence｜>`).
    pub eos_token: String,
    /// Shuffle the chunks with this seed; `None` keeps their order.
    pub shuffle_seed: Option<u64>,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            chunk_len: 2048,
            batch_rows: 2048,
            eos_token: "<｜end▁of▁sentence｜>".into(),
            shuffle_seed: None,
        }
    }
}

/// Counts of one chunking run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChunkStats {
    /// Texts read.
    pub rows: usize,
    /// Tokens in the EOS-joined streams (EOS separators included, specials not).
    pub stream_tokens: usize,
    /// Chunks kept.
    pub chunks: usize,
    /// Stream tokens in the dropped last piece of each batch.
    pub dropped_tokens: usize,
}

/// The chunks and their statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunks {
    /// Each of exactly `chunk_len` ids.
    pub chunks: Vec<Vec<u32>>,
    /// Counts.
    pub stats: ChunkStats,
}

impl Chunks {
    /// Batches of `batch_size` chunks (the last may be shorter).
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = &[Vec<u32>]> {
        self.chunks.chunks(batch_size.max(1))
    }
}

/// The ids the post-processor puts before and after a piece of text.
fn special_affixes(tok: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>)> {
    let enc =
        |special| tok.encode("a", special).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()));
    let (with, without) = (enc(true)?, enc(false)?);
    let at = (0..=with.len().saturating_sub(without.len()))
        .find(|&i| with[i..].starts_with(&without))
        .ok_or_else(|| Error::Tokenizer("post-processor output does not contain the plain encoding".into()))?;
    Ok((with[..at].to_vec(), with[at + without.len()..].to_vec()))
}

/// Tokenises `texts` into chunks (see the module documentation).
pub fn chunk_texts(tok: &Tokenizer, texts: &[String], options: &ChunkOptions) -> Result<Chunks> {
    let eos = tok
        .token_to_id(&options.eos_token)
        .ok_or_else(|| Error::Tokenizer(format!("EOS token {:?} is not in the vocabulary", options.eos_token)))?;
    let (prefix, suffix) = special_affixes(tok)?;
    let specials = prefix.len() + suffix.len();
    if options.chunk_len <= specials {
        return Err(Error::Options(format!(
            "chunk_len {} leaves no room beside {specials} special tokens",
            options.chunk_len
        )));
    }
    if options.batch_rows == 0 {
        return Err(Error::Options("batch_rows must be positive".into()));
    }
    let piece = options.chunk_len - specials;
    let encoded: Vec<Vec<u32>> = texts
        .par_iter()
        .map(|t| {
            tok.encode(t.as_str(), false).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let mut stats = ChunkStats { rows: texts.len(), ..ChunkStats::default() };
    let mut chunks = Vec::new();
    for batch in encoded.chunks(options.batch_rows) {
        let mut stream = Vec::with_capacity(batch.iter().map(|e| e.len() + 1).sum());
        for ids in batch {
            stream.push(eos);
            stream.extend_from_slice(ids);
        }
        stats.stream_tokens += stream.len();
        let pieces: Vec<&[u32]> = stream.chunks(piece).collect();
        if let Some((last, keep)) = pieces.split_last() {
            stats.dropped_tokens += last.len();
            for p in keep {
                let mut c = Vec::with_capacity(options.chunk_len);
                c.extend_from_slice(&prefix);
                c.extend_from_slice(p);
                c.extend_from_slice(&suffix);
                chunks.push(c);
            }
        }
    }
    if let Some(seed) = options.shuffle_seed {
        chunks.shuffle(&mut StdRng::seed_from_u64(seed));
    }
    stats.chunks = chunks.len();
    tracing::info!(rows = stats.rows, tokens = stats.stream_tokens, chunks = stats.chunks, "chunked");
    Ok(Chunks { chunks, stats })
}
