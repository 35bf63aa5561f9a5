//! The reference template and chunking on the real R1-Distill tokenizer and the shared
//! DeepScaleR AIME set (skipped with a message where `../shared/data` is absent;
//! `RESA_SHARED_DATA` overrides the location).

use std::path::PathBuf;

use resa_data::{ChunkOptions, ReadOptions, Template, chunk_texts, read_qa};

/// The shared data folder and the R1-Distill tokenizer in it.
fn shared() -> Option<(PathBuf, tokenizers::Tokenizer)> {
    let root = std::env::var_os("RESA_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = root.join("tokenizers/deepseek-r1-distill-qwen/tokenizer.json");
    if path.is_file() {
        let tok = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
        Some((root, tok))
    } else {
        eprintln!("SKIPPED: {} not found (set RESA_SHARED_DATA)", root.display());
        None
    }
}

#[test]
fn reference_chunks_start_like_sparsify() {
    let Some((root, tok)) = shared() else { return };
    let (rows, report) = read_qa(root.join("train/deepscaler_aime.jsonl"), &ReadOptions::strict()).expect("rows");
    assert_eq!((rows.len(), report.skipped()), (970, 0));
    let texts: Vec<String> = rows.iter().map(|r| Template::Reference.render(r)).collect();
    let out = chunk_texts(&tok, &texts, &ChunkOptions::default()).expect("chunks");
    assert_eq!(&out.chunks[0][..5], &[151646, 151643, 198, 32, 10435]);
    assert!(out.chunks.iter().all(|c| c.len() == 2048 && c[0] == 151646));
    assert!(
        out.chunks[0].contains(&151648) && out.chunks[0].contains(&151649),
        "<think> and </think> are single tokens"
    );
    // 970 rows fit one map batch: every full piece but the last is kept.
    let piece = 2047;
    assert_eq!(out.stats.chunks, out.stats.stream_tokens.div_ceil(piece) - 1);
    assert_eq!(out.stats.chunks * piece + out.stats.dropped_tokens, out.stats.stream_tokens);

    // Tokenising texts one by one equals tokenising the EOS-joined string.
    let eos = "<｜end▁of▁sentence｜>";
    let joined = format!("{eos}{}", texts[..30].join(eos));
    let whole = tok.encode(joined.as_str(), false).expect("encode").get_ids().to_vec();
    let few = chunk_texts(&tok, &texts[..30], &ChunkOptions::default()).expect("chunks");
    let stream: Vec<u32> = few.chunks.iter().flat_map(|c| c[1..].to_vec()).collect();
    assert!(!stream.is_empty());
    assert_eq!(&whole[..stream.len()], stream.as_slice());

    // Seeded shuffling is a permutation and repeatable.
    let opts = ChunkOptions { shuffle_seed: Some(42), ..ChunkOptions::default() };
    let a = chunk_texts(&tok, &texts, &opts).expect("chunks");
    let b = chunk_texts(&tok, &texts, &opts).expect("chunks");
    assert_eq!(a.chunks, b.chunks);
    assert_ne!(a.chunks, out.chunks);
    let (mut x, mut y) = (a.chunks.clone(), out.chunks.clone());
    x.sort();
    y.sort();
    assert_eq!(x, y);
}

#[test]
fn small_batches_drop_one_piece_each() {
    let Some((root, tok)) = shared() else { return };
    let (rows, _) = read_qa(root.join("train/deepscaler_math.jsonl"), &ReadOptions::default()).expect("rows");
    let texts: Vec<String> = rows[..200].iter().map(|r| Template::Paper.render(r)).collect();
    let opts = ChunkOptions { chunk_len: 128, batch_rows: 50, ..ChunkOptions::default() };
    let out = chunk_texts(&tok, &texts, &opts).expect("chunks");
    assert!(out.chunks.iter().all(|c| c.len() == 128));
    assert_eq!(out.stats.chunks * 127 + out.stats.dropped_tokens, out.stats.stream_tokens);
    assert!(out.stats.dropped_tokens >= 4, "one piece dropped per batch of 50 rows");
}

/// Same chunks as sparsify's `chunk_and_tokenize` (fixture written by
/// `scripts/reference/chunks_reference.py`): counts, first ids and a hash over every id.
#[test]
fn matches_sparsify_chunk_and_tokenize() {
    use sha2::{Digest, Sha256};
    let Some((root, tok)) = shared() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chunks.json"))
            .expect("fixture"),
    )
    .expect("json");
    let (rows, _) = read_qa(root.join("train/deepscaler_aime.jsonl"), &ReadOptions::strict()).expect("rows");
    let texts: Vec<String> = rows.iter().map(|r| Template::Reference.render(r)).collect();
    for len in [2048usize, 128] {
        let want = &fixture[len.to_string()];
        let out =
            chunk_texts(&tok, &texts, &ChunkOptions { chunk_len: len, ..ChunkOptions::default() }).expect("chunks");
        assert_eq!(out.chunks.len() as u64, want["chunks"].as_u64().expect("count"), "chunk count at {len}");
        let first: Vec<u64> =
            want["first_ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id")).collect();
        let got: Vec<u64> = out.chunks[0][..first.len()].iter().map(|&v| u64::from(v)).collect();
        assert_eq!(got, first, "first ids at {len}");
        let mut h = Sha256::new();
        for c in &out.chunks {
            let line: Vec<String> = c.iter().map(u32::to_string).collect();
            h.update(line.join(",").as_bytes());
            h.update(b"\n");
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want["sha256"].as_str().expect("hash"), "all chunk ids at {len}");
    }
}
