//! A run's data as token chunks: a dataset read, rendered with its template and chunked with
//! the model's tokenizer as sparsify does.

use std::path::Path;

use resa_data::{ChunkOptions, ReadOptions, Template, chunk_texts, load_dataset};
use resa_qwen2::Tokenizer;

use crate::error::{Error, Result};
use crate::pipeline::DataSection;

/// How a dataset becomes training chunks: read, cut, templated, tokenised with a model
/// folder's tokenizer and packed as sparsify does ([`chunk_dataset`]).
#[derive(Debug, Clone)]
pub struct ChunkSource<'a> {
    /// File, folder, registry name or hub id.
    pub spec: &'a str,
    /// Split of folders and hub datasets.
    pub split: &'a str,
    /// How a row becomes text.
    pub template: &'a Template,
    /// Tokens per chunk.
    pub ctx_len: usize,
    /// Use at most this many rows.
    pub max_rows: Option<usize>,
    /// Field names and whether a row with a missing field fails the read.
    pub read: ReadOptions,
    /// Shuffle the chunks with this seed (default: data order).
    pub shuffle_seed: Option<u64>,
    /// Where the cut is configured, for the message when no chunk results
    /// (`[data] ctx_len`, `--ctx-len`).
    pub ctx_len_name: &'a str,
}

/// The chunks of `source` for the tokenizer of `model_dir`, with their statistics; no chunk
/// at all is an error that says why (rows, tokens, the partial chunks dropped).
pub fn chunk_dataset(source: &ChunkSource<'_>, model_dir: &Path) -> Result<resa_data::Chunks> {
    let spec = source.spec;
    let (mut rows, report, _) = load_dataset(spec, source.split, &source.read)?;
    if report.skipped() > 0 {
        tracing::warn!(spec, skipped = report.skipped(), "rows with a missing field were skipped");
    }
    if source.template.needs_solution() {
        let before = rows.len();
        rows.retain(|r| r.solution.is_some());
        let missing = before - rows.len();
        if rows.is_empty() {
            return Err(Error::Rows {
                data: spec.to_string(),
                message: format!(
                    "the template `{}` needs each row's worked solution, and none of its {before} rows has one \
                     (looked for: {})",
                    source.template,
                    source.read.solution_keys.join(", ")
                ),
            });
        }
        if missing > 0 && source.read.strict {
            return Err(Error::Rows {
                data: spec.to_string(),
                message: format!(
                    "{missing} of {before} rows have no worked solution (looked for: {}), which the template `{}` \
                     needs",
                    source.read.solution_keys.join(", "),
                    source.template
                ),
            });
        }
        if missing > 0 {
            tracing::warn!(spec, missing, "rows without a worked solution were skipped (the template needs one)");
        }
    }
    if let Some(n) = source.max_rows {
        rows.truncate(n);
    }
    let texts: Vec<String> = rows.iter().map(|r| source.template.render(r)).collect();
    let tok = Tokenizer::from_dir(model_dir)?;
    let eos = tok
        .eos_token()
        .ok_or_else(|| Error::Tokenizer { model: model_dir.to_path_buf(), message: "it names no eos_token".into() })?;
    let chunks = chunk_texts(
        tok.inner(),
        &texts,
        &ChunkOptions {
            chunk_len: source.ctx_len,
            eos_token: eos.to_string(),
            shuffle_seed: source.shuffle_seed,
            ..ChunkOptions::default()
        },
    )?;
    if chunks.chunks.is_empty() {
        let st = &chunks.stats;
        return Err(Error::Rows {
            data: spec.to_string(),
            message: format!(
                "no chunk of {} tokens: {} rows give {} tokens after templating and {} of them are in the last \
                 partial chunk of each batch of rows, which is dropped (as sparsify does); lower {} or use more rows{}",
                source.ctx_len,
                st.rows,
                st.stream_tokens,
                st.dropped_tokens,
                source.ctx_len_name,
                source.max_rows.map_or(String::new(), |n| format!(" ([data] max_rows = {n} keeps only {n})")),
            ),
        });
    }
    Ok(chunks)
}

/// Templated, tokenised chunks of the dataset `spec` as `[data]` describes them, for a model
/// folder's tokenizer ([`chunk_dataset`]).
pub fn prepare_chunks(data: &DataSection, spec: &str, model_dir: &Path) -> Result<Vec<Vec<u32>>> {
    let source = ChunkSource {
        spec,
        split: &data.split,
        template: &data.template,
        ctx_len: data.ctx_len,
        max_rows: data.max_rows,
        read: ReadOptions::default(),
        shuffle_seed: None,
        ctx_len_name: "[data] ctx_len",
    };
    Ok(chunk_dataset(&source, model_dir)?.chunks)
}
