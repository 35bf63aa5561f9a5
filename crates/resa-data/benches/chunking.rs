#![allow(missing_docs)]
//! Throughput of reading, templating and chunking the shared 7,470-row DeepScaleR math set
//! with the real R1-Distill tokenizer (the target: well under a second per thousand
//! rows). Skipped with a message where `../shared/data` is absent (`RESA_SHARED_DATA`
//! overrides the location).

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_data::{ChunkOptions, ReadOptions, Template, chunk_texts, read_qa};

fn shared() -> PathBuf {
    std::env::var_os("RESA_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

fn benches(c: &mut Criterion) {
    let root = shared();
    let data = root.join("train/deepscaler_math.jsonl");
    let tok_path = root.join("tokenizers/deepseek-r1-distill-qwen/tokenizer.json");
    if data.is_file() && tok_path.is_file() {
        let tok = tokenizers::Tokenizer::from_file(&tok_path).expect("tokenizer");
        let rows = read_qa(&data, &ReadOptions::default()).expect("rows").0.len();
        let mut g = c.benchmark_group("data");
        g.sample_size(10);
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function(format!("deepscaler_math_{rows}_rows_read_template_chunk"), |b| {
            b.iter(|| {
                let (rows, _) = read_qa(&data, &ReadOptions::default()).expect("rows");
                let texts: Vec<String> = rows.iter().map(|r| Template::Reference.render(r)).collect();
                chunk_texts(&tok, &texts, &ChunkOptions::default()).expect("chunks").stats.chunks
            })
        });
        g.finish();
    } else {
        eprintln!("SKIPPED the DeepScaleR benchmark: {} not found (set RESA_SHARED_DATA)", data.display());
    }
}

criterion_group!(data, benches);
criterion_main!(data);
