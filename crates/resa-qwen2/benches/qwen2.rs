#![allow(missing_docs)]
//! Prefill and decode throughput of the Qwen2 model on a CPU-sized configuration
//! (random weights, f32), and the tied head's product, with its backward and without, in the two forms
//! `Qwen2ForCausalLM::head` chooses between. Run with `cargo bench -p resa-qwen2`; add
//! `--features ndarray` or `--features blas` to measure those CPU backends beside the default
//! `flex`.

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

/// The tied head `x Eᵀ` and the gradient of its input, at the Stage II bench's shapes
/// (512 tokens, hidden 512, vocabulary 8192): as `(E xᵀ)ᵀ` (inference's form) and as `x Eᵀ`
/// (training's).
fn bench_tied_head(c: &mut Criterion) {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let (v, h, n) = (8192, 512, 512);
    let e = Tensor::<A, 2>::random([v, h], Distribution::Normal(0.0, 0.02), &dev);
    let x0 = Tensor::<A, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &dev);
    let mut group = c.benchmark_group("tied-head-flex");
    group.sample_size(20);
    group.throughput(Throughput::Elements(n as u64));
    for (name, direct) in [("forward_backward_E_xT_transposed", false), ("forward_backward_x_ET", true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let x = x0.clone().detach().require_grad();
                let logits = if direct {
                    x.clone().matmul(e.clone().transpose())
                } else {
                    e.clone().matmul(x.clone().transpose()).transpose()
                };
                let grads = logits.reshape([n * v]).sum().backward();
                x.grad(&grads).expect("a gradient").into_data()
            })
        });
    }
    group.finish();
    // Inference (no gradient): the logits of `n` rows read back whole, as a teacher's or a
    // prefill's are.
    let e = e.inner();
    let mut group = c.benchmark_group("tied-head-inference-flex");
    group.sample_size(20);
    for n in [1usize, 8, 64, 512] {
        let x = Tensor::<Flex, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &dev);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("E_xT_transposed/{n}"), |b| {
            b.iter(|| e.clone().matmul(x.clone().transpose()).transpose().reshape([n * v]).into_data())
        });
        group.bench_function(format!("x_ET/{n}"), |b| {
            b.iter(|| x.clone().matmul(e.clone().transpose()).reshape([n * v]).into_data())
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_tied_head(c);
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
