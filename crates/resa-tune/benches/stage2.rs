#![allow(missing_docs)]
//! One Stage II optimizer step (teacher forward, student forward with the SAE spliced,
//! backward, global clipping, AdamW) on a CPU-sized configuration: a 24M-parameter Qwen2
//! (hidden 512, 4 layers, vocab 8192), LoRA r 32 on all seven linears, an SAE with 4096
//! latents (k 32) at `layers.1`, one chunk of 256 tokens, f32 on `flex`.
//! Run with `cargo bench -p resa-tune`.

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resa_lora::LoraConfig;
use resa_qwen2::{Hookpoint, Qwen2Config, Qwen2ForCausalLM};
use resa_sae::{SaeConfig, SparseCoder};
use resa_tune::{SaeGrad, SaeTuning, TuneConfig, train_adapters};

type AD = Autodiff<Flex>;

fn benches(c: &mut Criterion) {
    let cfg = Qwen2Config::bench();
    let device = Default::default();
    let seq = 256;
    let chunks: Vec<Vec<u32>> = (0..4).map(|c| (0..seq as u32).map(|i| (i * 7919 + c * 13) % 8192).collect()).collect();
    let sae = SparseCoder::<AD>::random(SaeConfig::new(512, 4096, 32), 0, &device).expect("sae");
    let lora = LoraConfig::reference();
    let tmp = std::env::temp_dir().join(format!("resa-bench-stage2-{}", std::process::id()));
    let mut group = c.benchmark_group("stage2-flex");
    group.sample_size(10);
    group.throughput(Throughput::Elements(seq as u64));
    group.bench_function(format!("step_1x{seq}"), |b| {
        b.iter_batched(
            || {
                let mut m = Qwen2ForCausalLM::<AD>::random(&cfg, 0, &device, DType::F32);
                resa_lora::attach(&mut m, &lora, 0).expect("attach");
                resa_lora::trainable(m)
            },
            |model| {
                let at = Hookpoint::Residual(1).within(cfg.num_hidden_layers).expect("in range");
                let objective = SaeTuning::new(&sae, at, SaeGrad::Detach);
                let tune =
                    TuneConfig { max_steps: Some(1), save_every: 1000, out: tmp.clone(), ..TuneConfig::default() };
                train_adapters(model, &lora, &objective, &chunks, &tune, &mut |_| false).expect("step").1.steps
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&tmp);
}

criterion_group!(stage2, benches);
criterion_main!(stage2);
