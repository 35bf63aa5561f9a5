#![allow(missing_docs)]
//! SAE throughput at the size: d_in 1536 (R1-Distill-Qwen-1.5B), 16384 latents,
//! k 32, f32. `train_step` is one full Signum step (selection, sparse forward/backward,
//! decoder constraints, optimizer); `encode` the inference forward. Tokens per second are
//! criterion's element throughput. Run with `cargo bench -p resa-sae` (flex, CPU); on a GPU
//! use `cargo xtask bench`.

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor, backend::Backend};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_sae::{SaeConfig, SaeTrainer, SparseCoder, TrainConfig};

const D_IN: usize = 1536;
const LATENTS: usize = 16384;
const K: usize = 32;

fn bench_backend<B: Backend>(c: &mut Criterion, name: &str, tokens: usize) {
    let device = B::Device::default();
    let sae = SparseCoder::<B>::random(SaeConfig::new(D_IN, LATENTS, K), 0, &device).expect("sae");
    let x = Tensor::<B, 2>::random([tokens, D_IN], Distribution::Normal(0.0, 1.0), &device);
    let mut group = c.benchmark_group(format!("sae-{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function(format!("encode_{tokens}"), |b| {
        b.iter(|| sae.forward(x.clone(), None).expect("forward").fvu.into_data())
    });
    let mut trainer = SaeTrainer::<Autodiff<B>>::new(sae.clone(), TrainConfig::default()).expect("trainer");
    group.bench_function(format!("train_step_{tokens}"), |b| b.iter(|| trainer.step(x.clone()).expect("step").fvu));
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_backend::<burn::backend::Flex>(c, "flex", 512);
}

criterion_group!(sae, benches);
criterion_main!(sae);
