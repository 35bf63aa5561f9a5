#![allow(missing_docs)]
//! Throughput of the toy world: generating 10,000 training problems with their
//! chain-of-thought solutions and chunking them with the toy tokenizer.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_data::{ChunkOptions, chunk_texts};
use resa_toy::world::{self, Split, ToyWorld};

fn benches(c: &mut Criterion) {
    let tok = world::tokenizer().expect("toy tokenizer");
    let mut g = c.benchmark_group("toy");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("generate_and_chunk_10000", |b| {
        b.iter(|| {
            let texts: Vec<String> =
                ToyWorld::default().problems(Split::Train, 10_000).iter().map(|p| p.cot_text()).collect();
            let opts = ChunkOptions { chunk_len: 256, eos_token: world::EOS.into(), ..ChunkOptions::default() };
            chunk_texts(&tok, &texts, &opts).expect("chunks").stats.chunks
        })
    });
    g.finish();
}

criterion_group!(toy, benches);
criterion_main!(toy);
