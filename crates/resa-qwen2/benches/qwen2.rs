#![allow(missing_docs)]
//! Prefill and decode throughput of the Qwen2 model on a CPU-sized configuration
//! (random weights, f32). Run with `cargo bench -p resa-qwen2`; add `--features ndarray`
//! or `--features blas` to measure those CPU backends beside the default `flex`.

use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_qwen2::{ForwardInput, GenerationConfig, Hooks, Logits, Qwen2Config, Qwen2ForCausalLM, generate};

fn bench_backend<B: Backend>(c: &mut Criterion, name: &str) {
    let device = B::Device::default();
    let cfg = Qwen2Config::bench();
    let model = Qwen2ForCausalLM::<B>::random(&cfg, 0, &device, DType::F32);
    let seq = 256;
    let ids: Vec<i64> = (0..seq as i64).map(|i| (i * 7919) % cfg.vocab_size as i64).collect();
    let mut group = c.benchmark_group(format!("qwen2-{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(seq as u64));
    group.bench_function(format!("prefill_1x{seq}"), |b| {
        b.iter(|| {
            let input =
                ForwardInput::new(Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, seq]), &device))
                    .with_logits(Logits::All);
            let out = model.forward(input, &Hooks::default(), None).expect("forward");
            out.logits.expect("logits").into_data()
        })
    });
    let new_tokens = 32;
    group.throughput(Throughput::Elements(new_tokens as u64));
    let prompt: Vec<u32> = ids[..64].iter().map(|&t| t as u32).collect();
    group.bench_function(format!("greedy_decode_{new_tokens}_after_64"), |b| {
        b.iter(|| {
            generate(&model, std::slice::from_ref(&prompt), &GenerationConfig::greedy(new_tokens, vec![]))
                .expect("generate")
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    #[cfg(feature = "flex")]
    bench_backend::<burn::backend::Flex>(c, "flex");
    #[cfg(feature = "ndarray")]
    bench_backend::<burn::backend::NdArray>(c, if cfg!(feature = "blas") { "ndarray-openblas" } else { "ndarray" });
    #[cfg(feature = "wgpu")]
    bench_backend::<burn::backend::Wgpu>(c, "wgpu");
    let _ = c;
}

criterion_group!(qwen2, benches);
criterion_main!(qwen2);
