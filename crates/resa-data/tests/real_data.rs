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

/// The exact text and ids of both templates for one row; the ids were produced by
/// transformers' `AutoTokenizer` on the same tokenizer (with special tokens, so BOS first).
#[test]
fn templates_render_and_tokenize_exactly() {
    let Some((_, tok)) = shared() else { return };
    let row = resa_data::QaRow::new("What is 1+1?", "2");
    let reference = Template::Reference.render(&row);
    assert_eq!(
        reference,
        format!(
            "{}User:\n What is 1+1?\n\nAssistant:\n <think> 2 </think>\n<answer> Answer: 2</answer>",
            resa_data::REFERENCE_SYSTEM_PROMPT
        )
    );
    let paper = Template::Paper.render(&row);
    assert_eq!(paper, "Problem: What is 1+1? <think> 2 </think> <answer> Answer: 2 </answer>");
    let ids = |t: &str| tok.encode(t, true).expect("encode").get_ids().to_vec();
    let want_reference: [u32; 110] = [
        151646, 198, 32, 10435, 1948, 2657, 323, 21388, 13, 576, 1196, 17064, 264, 3405, 11, 323, 279, 21388, 67477,
        432, 13, 576, 17847, 1156, 15482, 911, 279, 32711, 1882, 304, 279, 3971, 323, 1221, 5707, 279, 1196, 448, 279,
        4226, 13, 576, 32711, 1882, 323, 4226, 525, 43810, 2878, 220, 151648, 220, 151649, 323, 366, 9217, 29, 690,
        9217, 29, 9492, 11, 15576, 11, 600, 1734, 2572, 220, 151648, 32711, 1882, 1588, 220, 151649, 366, 9217, 29,
        4226, 1588, 690, 9217, 29816, 1474, 510, 3555, 374, 220, 16, 10, 16, 1939, 71703, 510, 220, 151648, 220, 17,
        220, 151649, 198, 27, 9217, 29, 21806, 25, 220, 17, 522, 9217, 29,
    ];
    assert_eq!(ids(&reference), want_reference);
    let want_paper: [u32; 26] = [
        151646, 31198, 25, 3555, 374, 220, 16, 10, 16, 30, 220, 151648, 220, 17, 220, 151649, 366, 9217, 29, 21806, 25,
        220, 17, 690, 9217, 29,
    ];
    assert_eq!(ids(&paper), want_paper);
}

/// The evaluation prompt through R1-Distill's chat template, as transformers'
/// `apply_chat_template(..., add_generation_prompt=True)` renders it.
#[test]
fn math_eval_prompt_renders_like_transformers() {
    let Some((root, _)) = shared() else { return };
    let tok = resa_qwen2::Tokenizer::from_dir(root.join("tokenizers/deepseek-r1-distill-qwen")).expect("tokenizer");
    let text = tok
        .apply_chat_template(&[resa_qwen2::ChatMessage::user(resa_data::math_eval_message("What is 1+1?"))], true)
        .expect("render");
    let want = format!(
        "<｜begin▁of▁sentence｜><｜User｜>{}\n\nWhat is 1+1?<｜Assistant｜><think>\n",
        resa_data::MATH_EVAL_PROMPT
    );
    assert_eq!(text, want);
    assert!(want.contains("final answer is: $\\boxed{ANSWER}$. I hope it is correct"));
}
