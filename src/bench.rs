//! Fixed workloads with random weights for `resa bench` / `cargo xtask bench`, the same as
//! `scripts/bench/bench_torch.py` runs in PyTorch, so both can be timed side by side on one
//! machine:
//!
//! - `prefill`: Qwen2 with Qwen2.5-0.5B shapes, f32, batch 1 × 512 tokens (last-position
//!   logits, as a generation prefill);
//! - `stage2_step`: one Stage II optimizer step (teacher and student forward, KL, backward,
//!   clip, AdamW) with LoRA r 32 on all seven linears and a 16×-hidden SAE (k 32) at the
//!   middle layer, on a small Qwen2 (hidden 512, 4 layers, vocabulary 8192), 512 tokens;
//! - `sae_step`: one SAE training step (Adam), d_in 1536, 16384 latents, k 32, 4096 tokens;
//! - `decode_b1`, `decode_b8`: greedy decoding of 128 new tokens after a 16-token prompt,
//!   batch 1 and 8, Qwen2.5-0.5B shapes.
//!
//! Each workload runs once to warm up, then `repeats` times; the median time gives tokens/s.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData, backend::Backend};
use resa_lora::LoraConfig;
use resa_qwen2::{ForwardInput, GenerationConfig, Hookpoint, Hooks, Logits, Qwen2Config, Qwen2ForCausalLM, generate};
use resa_sae::{OptimizerKind, SaeConfig, SaeTrainer, SparseCoder, TrainConfig};
use resa_tune::{Objective, SaeGrad, TuneConfig, train_adapters};
use serde::Serialize;

/// The workloads, in the order they run.
pub const WORKLOADS: [&str; 5] = ["prefill", "stage2_step", "sae_step", "decode_b1", "decode_b8"];

/// One measured workload.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Workload name.
    pub name: String,
    /// Tokens processed per run.
    pub tokens: usize,
    /// Seconds of each timed run.
    pub seconds: Vec<f64>,
    /// Median of `seconds`.
    pub median_seconds: f64,
    /// `tokens / median_seconds`.
    pub tokens_per_second: f64,
    /// The process's peak resident memory after the workload (Linux `VmHWM`), MiB; a running
    /// maximum over the whole process.
    pub peak_rss_mib: Option<f64>,
}

/// Qwen2.5-0.5B's shapes.
pub fn qwen25_05b() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 151_936,
        hidden_size: 896,
        intermediate_size: 4864,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        head_dim: 64,
        max_position_embeddings: 32768,
        rms_norm_eps: 1e-6,
        rope_theta: 1_000_000.0,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_ids: vec![],
        torch_dtype: Some("float32".into()),
    }
}

/// The small model of the Stage II workload.
pub fn stage2_model() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 8192,
        hidden_size: 512,
        intermediate_size: 1408,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        head_dim: 64,
        ..Qwen2Config::tiny()
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn ids(n: usize, vocab: usize, salt: u64) -> Vec<u32> {
    (0..n as u64).map(|i| ((i * 7919 + salt * 104_729) % vocab as u64) as u32).collect()
}

fn measure(
    name: &str,
    tokens: usize,
    repeats: usize,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<BenchResult> {
    run()?;
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        run()?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median_seconds = sorted[sorted.len() / 2];
    Ok(BenchResult {
        name: name.into(),
        tokens,
        seconds,
        median_seconds,
        tokens_per_second: tokens as f64 / median_seconds,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Runs the workloads named in `only` (all when empty) on backend `B`.
pub fn run_benches<B: Backend>(
    device: &B::Device,
    only: &[String],
    repeats: usize,
    on_result: &mut dyn FnMut(&BenchResult),
) -> anyhow::Result<Vec<BenchResult>> {
    if let Some(bad) = only.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
        anyhow::bail!("unknown workload `{bad}`; known: {}", WORKLOADS.join(", "));
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut out = Vec::new();
    let mut push = |r: BenchResult, out: &mut Vec<BenchResult>| {
        on_result(&r);
        out.push(r);
    };
    if wanted("prefill") || wanted("decode_b1") || wanted("decode_b8") {
        let cfg = qwen25_05b();
        let model = Qwen2ForCausalLM::<B>::random(&cfg, 0, device, DType::F32);
        if wanted("prefill") {
            let prompt = ids(512, cfg.vocab_size, 1);
            let r = measure("prefill", 512, repeats, || {
                let input = Tensor::<B, 2, Int>::from_data(
                    TensorData::new(prompt.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, 512]),
                    device,
                );
                let out = model.forward(ForwardInput::new(input).with_logits(Logits::Last), &Hooks::default(), None)?;
                let logits = out.logits.ok_or_else(|| anyhow::anyhow!("no logits"))?;
                let _ = logits.into_data();
                Ok(())
            })?;
            push(r, &mut out);
        }
        for (name, batch) in [("decode_b1", 1usize), ("decode_b8", 8)] {
            if !wanted(name) {
                continue;
            }
            let prompts: Vec<Vec<u32>> = (0..batch).map(|b| ids(16, cfg.vocab_size, b as u64 + 2)).collect();
            // No stop ids: every sequence runs the full 128 tokens.
            let gen_cfg = GenerationConfig::greedy(128, vec![]);
            let r = measure(name, batch * 128, repeats, || {
                let g = generate(&model, &prompts, &gen_cfg)?;
                anyhow::ensure!(g.iter().all(|s| s.ids.len() == 128), "a sequence stopped early");
                Ok(())
            })?;
            push(r, &mut out);
        }
    }
    if wanted("stage2_step") {
        type AD<B> = Autodiff<B>;
        let cfg = stage2_model();
        let seq = 512;
        let chunks: Vec<Vec<u32>> = (0..2).map(|c| ids(seq, cfg.vocab_size, 10 + c)).collect();
        let sae = SparseCoder::<AD<B>>::random(SaeConfig::new(cfg.hidden_size, 16 * cfg.hidden_size, 32), 0, device)?;
        let lora = LoraConfig::reference();
        let tmp = std::env::temp_dir().join(format!("resa-bench-stage2-{}", std::process::id()));
        let mut base = Qwen2ForCausalLM::<AD<B>>::random(&cfg, 0, device, DType::F32);
        resa_lora::attach(&mut base, &lora, 0)?;
        let base = resa_lora::trainable(base);
        // The step includes writing its (small) checkpoint, as every last step of a run does.
        let r = measure("stage2_step", seq, repeats, || {
            let m = base.clone();
            let objective =
                Objective::SaeTuning { sae: &sae, hookpoint: Hookpoint::Residual(2), grad: SaeGrad::Detach };
            let tune = TuneConfig { max_steps: Some(1), save_every: 1000, out: tmp.clone(), ..TuneConfig::default() };
            train_adapters(m, &lora, &objective, &chunks, &tune, &mut |_| false)?;
            Ok(())
        })?;
        let _ = std::fs::remove_dir_all(&tmp);
        push(r, &mut out);
    }
    if wanted("sae_step") {
        let (d, latents, n) = (1536, 16384, 4096);
        let sae = SparseCoder::<B>::random(SaeConfig::new(d, latents, 32), 0, device)?;
        let mut trainer = SaeTrainer::<Autodiff<B>>::new(
            sae,
            TrainConfig { optimizer: OptimizerKind::Adam, ..TrainConfig::default() },
        )?;
        let acts = Tensor::<B, 2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
        let r = measure("sae_step", n, repeats, || {
            trainer.step(acts.clone())?;
            Ok(())
        })?;
        push(r, &mut out);
    }
    Ok(out)
}
