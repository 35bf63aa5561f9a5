#![doc = include_str!("../README.md")]

pub mod error;
mod toy;

pub use error::{Error, Result};

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData, backend::Backend};
use resa_lora::LoraConfig;
use resa_qwen2::{ForwardInput, GenerationConfig, Hookpoint, Hooks, Logits, Qwen2Config, Qwen2ForCausalLM, generate};
use resa_sae::{OptimizerKind, SaeConfig, SaeTrainer, SparseCoder, TrainConfig};
use resa_tune::{SaeGrad, SaeTuning, TuneConfig, train_adapters};
use serde::Serialize;

/// The workloads, in the order they run.
pub const WORKLOADS: [&str; 15] = [
    "gemm",
    "prefill",
    "stage2_step",
    "stage2_step_plain",
    "stage2_step_recompute",
    "sae_step",
    "stage2_step_vocab",
    "stage2_step_vocab_full",
    "decode_b1",
    "decode_b8",
    "serve_c1",
    "serve_c8",
    "toy_train_step",
    "grpo_step",
    "toy_eval",
];

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
    /// Estimated floating-point operations of one run (multiply-adds count 2).
    pub flops: f64,
    /// `flops / median_seconds / 1e12`.
    pub tflops_per_second: f64,
    /// Cores kept busy during the timed runs: the process's CPU time (user and system, every
    /// thread) over their wall-clock time; 2.0 is two cores the whole time. Only the timed
    /// runs count, not the setup nor the warm-up. `None` where the process's CPU clock cannot
    /// be read.
    pub cores_busy: Option<f64>,
}

/// The shapes the workloads run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchSize {
    /// CPU-sized (the default; see the module documentation).
    Cpu,
    /// DeepSeek-R1-Distill-Qwen-1.5B's shapes (for a GPU).
    Gpu15b,
}

impl std::str::FromStr for BenchSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(BenchSize::Cpu),
            "1.5b" => Ok(BenchSize::Gpu15b),
            _ => Err(format!("unknown size `{s}` (expected cpu or 1.5b)")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Only these workloads (all when empty).
    pub only: Vec<String>,
    /// Timed runs per workload, after one warm-up.
    pub repeats: usize,
    /// Shapes.
    pub size: BenchSize,
    /// Compute dtype of the models (the SAE step stays f32, as sparsify trains).
    pub dtype: DType,
}

/// DeepSeek-R1-Distill-Qwen-1.5B's shapes (Qwen2.5-1.5B with an untied head).
pub fn r1_distill_15b() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 151_936,
        hidden_size: 1536,
        intermediate_size: 8960,
        num_hidden_layers: 28,
        num_attention_heads: 12,
        num_key_value_heads: 2,
        head_dim: 128,
        max_position_embeddings: 131_072,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        tie_word_embeddings: false,
        bos_token_id: None,
        eos_token_ids: vec![],
        torch_dtype: Some("bfloat16".into()),
    }
}

/// Matmul parameters of the decoder stack (attention and MLP projections), without the
/// embedding and head.
fn stack_params(cfg: &Qwen2Config) -> f64 {
    let (h, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    let kv = (cfg.num_key_value_heads * cfg.head_dim) as f64;
    (h * q + 2.0 * h * kv + q * h + 3.0 * h * i) * cfg.num_hidden_layers as f64
}

/// FLOPs of a causal forward over `t` new tokens after `past` cached ones through `layers`
/// layers, with `head_tokens` positions through the output head.
fn forward_flops(cfg: &Qwen2Config, t: f64, past: f64, layers: f64, head_tokens: f64) -> f64 {
    let per_layer = stack_params(cfg) / cfg.num_hidden_layers as f64;
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    // Scores and weighted values: 2·2·q per (query, key) pair; causal pairs ≈ t·past + t²/2.
    let attention = 4.0 * q * (t * past + t * t / 2.0);
    layers * (2.0 * t * per_layer + attention) + 2.0 * head_tokens * (cfg.hidden_size * cfg.vocab_size) as f64
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

/// The small model of the Stage II workload ([`Qwen2Config::bench`]).
pub fn stage2_model() -> Qwen2Config {
    Qwen2Config::bench()
}

/// The narrow model of `stage2_step_vocab`: DeepSeek-R1-Distill's vocabulary (151,936) on
/// hidden 256 and 2 layers.
pub fn stage2_vocab_model() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 151_936,
        hidden_size: 256,
        intermediate_size: 768,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 64,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
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
    flops: f64,
    repeats: usize,
    mut run: impl FnMut() -> Result<()>,
) -> Result<BenchResult> {
    run()?;
    let mut seconds = Vec::with_capacity(repeats);
    let start = Clocks::now();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        run()?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    let busy = start.cores_busy_since();
    Ok(from_seconds(name, tokens, flops, seconds, busy))
}

/// The wall clock and the process's CPU clock at one moment.
#[derive(Clone, Copy)]
struct Clocks {
    wall: Instant,
    cpu: Option<f64>,
}

impl Clocks {
    fn now() -> Self {
        Clocks { wall: Instant::now(), cpu: process_cpu_seconds() }
    }

    /// CPU seconds over wall seconds from `self` to now.
    fn cores_busy_since(&self) -> Option<f64> {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds()? - self.cpu?;
        (wall > 0.0).then(|| cpu / wall)
    }
}

/// The CPU time of this process so far (every thread, user and system), seconds.
#[cfg(unix)]
fn process_cpu_seconds() -> Option<f64> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(unix))]
fn process_cpu_seconds() -> Option<f64> {
    None
}

/// The per-step times a training loop reports (tokens over tokens per second), and the cores
/// kept busy from the end of its first step, the warm-up, to the end of its last.
#[derive(Default)]
struct StepTimes {
    seconds: Vec<f64>,
    after_warm_up: Option<Clocks>,
    busy: Option<f64>,
}

impl StepTimes {
    /// Records a step of `tokens` at `tokens_per_second`.
    fn record(&mut self, tokens: usize, tokens_per_second: f64) {
        self.seconds.push(tokens as f64 / tokens_per_second);
        match &self.after_warm_up {
            None => self.after_warm_up = Some(Clocks::now()),
            Some(c) => self.busy = c.cores_busy_since(),
        }
    }

    /// The result over every step but the first.
    fn result(mut self, name: &str, tokens: usize, flops: f64) -> BenchResult {
        let timed = self.seconds.split_off(1.min(self.seconds.len()));
        from_seconds(name, tokens, flops, timed, self.busy)
    }
}

/// The result of timed runs lasting `seconds`.
fn from_seconds(name: &str, tokens: usize, flops: f64, seconds: Vec<f64>, cores_busy: Option<f64>) -> BenchResult {
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median_seconds = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    BenchResult {
        name: name.into(),
        tokens,
        seconds,
        median_seconds,
        tokens_per_second: tokens as f64 / median_seconds,
        peak_rss_mib: peak_rss_mib(),
        flops,
        tflops_per_second: flops / median_seconds / 1e12,
        cores_busy,
    }
}

/// Times optimizer steps as PyTorch's `step()` is timed: one `train_adapters` run of
/// `repeats + 1` steps, one chunk each, the first a warm-up; a step's time is the trainer's
/// own (forward, backward, clipping, AdamW — not the checkpoint written after the last step,
/// nor the run's setup).
fn measure_steps(
    name: &str,
    flops: f64,
    repeats: usize,
    chunks: &[Vec<u32>],
    run: impl FnOnce(&[Vec<u32>], &TuneConfig, &mut dyn FnMut(&resa_tune::StepMetrics) -> bool) -> Result<()>,
) -> Result<BenchResult> {
    let steps = repeats.max(1) + 1;
    if chunks.len() < steps {
        return Err(Error::Benchmark {
            workload: name.into(),
            message: format!("{} chunks for {steps} steps", chunks.len()),
        });
    }
    let tmp = std::env::temp_dir().join(format!("resa-bench-{name}-{}", std::process::id()));
    let tune = TuneConfig {
        max_steps: Some(steps as u64),
        epochs: 1,
        batch_size: 1,
        save_every: 1_000_000,
        out: tmp.clone(),
        ..TuneConfig::default()
    };
    let mut times = StepTimes::default();
    let tokens = chunks[0].len();
    let r = run(&chunks[..steps], &tune, &mut |m| {
        times.record(m.tokens, m.tokens_per_second);
        true
    });
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    Ok(times.result(name, tokens, flops))
}

/// Runs the workloads of `opts` on backend `B`.
pub fn run_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    on_result: &mut dyn FnMut(&BenchResult),
) -> Result<Vec<BenchResult>> {
    let only = &opts.only;
    if let Some(bad) = only.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
        return Err(Error::Usage(format!("unknown workload `{bad}`; known: {}", WORKLOADS.join(", "))));
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut out = Vec::new();
    // Each group shares its setup (a model, an SAE) among its workloads and runs only those
    // asked for.
    let groups: [Group<B>; 7] = [
        gemm_bench::<B>,
        model_benches::<B>,
        stage2_benches::<B>,
        serve_benches::<B>,
        vocab_benches::<B>,
        sae_bench::<B>,
        toy::toy_benches::<B>,
    ];
    for group in groups {
        for r in group(device, opts, &wanted)? {
            on_result(&r);
            out.push(r);
        }
    }
    Ok(out)
}

/// A group of workloads: the results of those `wanted` says to run.
type Group<B> = fn(
    &<B as burn::tensor::backend::BackendTypes>::Device,
    &BenchOptions,
    &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>>;

/// `gemm`: one n × n × n product (n 2048, or 4096 at the 1.5B size).
fn gemm_bench<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    if !wanted("gemm") {
        return Ok(Vec::new());
    }
    let n = if opts.size == BenchSize::Gpu15b { 4096 } else { 2048 };
    let a = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), device).cast(opts.dtype);
    let b = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), device).cast(opts.dtype);
    let r = measure("gemm", n, 2.0 * (n as f64).powi(3), opts.repeats, || {
        let c = a.clone().matmul(b.clone());
        let _ = c.slice([0..1, 0..1]).into_data();
        Ok(())
    })?;
    Ok(vec![r])
}

/// `prefill`, `decode_b1`, `decode_b8` on one random model of the chosen size.
fn model_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    if !(wanted("prefill") || wanted("decode_b1") || wanted("decode_b8")) {
        return Ok(out);
    }
    let (big, repeats) = (opts.size == BenchSize::Gpu15b, opts.repeats);
    let cfg = if big { r1_distill_15b() } else { qwen25_05b() };
    let layers = cfg.num_hidden_layers as f64;
    let model = Qwen2ForCausalLM::<B>::random(&cfg, 0, device, opts.dtype);
    if wanted("prefill") {
        let n = if big { 2048 } else { 512 };
        let prompt = ids(n, cfg.vocab_size, 1);
        let flops = forward_flops(&cfg, n as f64, 0.0, layers, 1.0);
        let r = measure("prefill", n, flops, repeats, || {
            let input = Tensor::<B, 2, Int>::from_data(
                TensorData::new(prompt.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, n]),
                device,
            );
            let out = model.forward(ForwardInput::new(input).with_logits(Logits::Last), &Hooks::default(), None)?;
            let logits = out.logits.ok_or_else(|| Error::Benchmark {
                workload: "prefill".into(),
                message: "the forward returned no logits".into(),
            })?;
            let _ = logits.into_data();
            Ok(())
        })?;
        out.push(r);
    }
    for (name, batch) in [("decode_b1", 1usize), ("decode_b8", 8)] {
        if !wanted(name) {
            continue;
        }
        let prompts: Vec<Vec<u32>> = (0..batch).map(|b| ids(16, cfg.vocab_size, b as u64 + 2)).collect();
        // No stop ids: every sequence runs the full 128 tokens.
        let gen_cfg = GenerationConfig::greedy(128, vec![]);
        let flops = batch as f64
            * (forward_flops(&cfg, 16.0, 0.0, layers, 1.0)
                + (0..127).map(|p| forward_flops(&cfg, 1.0, 16.0 + p as f64, layers, 1.0)).sum::<f64>());
        let r = measure(name, batch * 128, flops, repeats, || {
            let g = generate(&model, &prompts, &gen_cfg)?;
            if !g.iter().all(|s| s.ids.len() == 128) {
                return Err(Error::Benchmark {
                    workload: name.into(),
                    message: "a sequence stopped before 128 tokens".into(),
                });
            }
            Ok(())
        })?;
        out.push(r);
    }
    Ok(out)
}

/// What a Stage II workload trains: one chunk per step of `seq` random tokens (and one more
/// for the warm-up), a random SAE (k 32), the reference LoRA attached to a random model.
struct Stage2Setup<B: Backend> {
    chunks: Vec<Vec<u32>>,
    sae: SparseCoder<Autodiff<B>>,
    lora: LoraConfig,
    base: Qwen2ForCausalLM<Autodiff<B>>,
}

impl<B: Backend> Stage2Setup<B> {
    fn new(
        cfg: &Qwen2Config,
        seq: usize,
        latents: usize,
        data_seed: u64,
        device: &B::Device,
        opts: &BenchOptions,
    ) -> Result<Self> {
        let chunks = (0..opts.repeats.max(1) as u64 + 1).map(|c| ids(seq, cfg.vocab_size, data_seed + c)).collect();
        let sae = SparseCoder::<Autodiff<B>>::random(SaeConfig::new(cfg.hidden_size, latents, 32), 0, device)?;
        let lora = LoraConfig::reference();
        let mut base = Qwen2ForCausalLM::<Autodiff<B>>::random(cfg, 0, device, opts.dtype);
        resa_lora::attach(&mut base, &lora, 0)?;
        Ok(Stage2Setup { chunks, sae, lora, base: resa_lora::trainable(base) })
    }

    /// Times `objective`'s training steps on this setup ([`measure_steps`]).
    fn measure(
        &self,
        name: &str,
        flops: f64,
        objective: &dyn resa_tune::Objective<Autodiff<B>>,
        opts: &BenchOptions,
    ) -> Result<BenchResult> {
        measure_steps(name, flops, opts.repeats, &self.chunks, |chunks, tune, on_step| {
            train_adapters(self.base.clone(), &self.lora, objective, chunks, tune, on_step)?;
            Ok(())
        })
    }
}

/// `stage2_step`, `stage2_step_plain`, `stage2_step_recompute`: one Stage II step (LoRA on
/// all seven linears, the SAE spliced in the middle) as resa runs it, as the reference
/// computes it, and with the student's layers recomputed.
fn stage2_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    if !(wanted("stage2_step") || wanted("stage2_step_plain") || wanted("stage2_step_recompute")) {
        return Ok(out);
    }
    let big = opts.size == BenchSize::Gpu15b;
    let (cfg, seq, latents, layer) = if big {
        (r1_distill_15b(), 2048, 65_536, 12)
    } else {
        let c = stage2_model();
        let l = 16 * c.hidden_size;
        (c, 512, l, 2)
    };
    let setup = Stage2Setup::<B>::new(&cfg, seq, latents, 10, device, opts)?;
    let sae = &setup.sae;
    // Teacher and student forwards, the backward to the hookpoint (input gradients of
    // the layers after it and of the head), the SAE's dense encoder.
    let t = seq as f64;
    let layers = cfg.num_hidden_layers as f64;
    let after = layers - (layer + 1) as f64;
    let flops = 2.0 * forward_flops(&cfg, t, 0.0, layers, t)
        + forward_flops(&cfg, t, 0.0, after, t)
        + 2.0 * t * (cfg.hidden_size * latents) as f64;
    // `stage2_step` as resa runs it (the student starts from the teacher's activation at
    // the hookpoint); `stage2_step_plain` computes the same step as the reference does;
    // `stage2_step_recompute` recomputes the student's layers in the backward.
    for (name, shared, recompute) in
        [("stage2_step", true, false), ("stage2_step_plain", false, false), ("stage2_step_recompute", true, true)]
    {
        if !wanted(name) {
            continue;
        }
        let at = Hookpoint::Residual(layer).within(cfg.num_hidden_layers)?;
        let objective = SaeTuning::new(&sae, at, SaeGrad::Detach).with_shared_prefix(shared).with_recompute(recompute);
        out.push(setup.measure(name, flops, &objective, opts)?);
    }
    Ok(out)
}

/// `stage2_step_vocab`, `stage2_step_vocab_full`: a Stage II step at the paper's vocabulary,
/// the head in pieces and whole.
fn vocab_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    if !(wanted("stage2_step_vocab") || wanted("stage2_step_vocab_full")) {
        return Ok(out);
    }
    let cfg = stage2_vocab_model();
    let seq = 2048;
    let setup = Stage2Setup::<B>::new(&cfg, seq, 4096, 20, device, opts)?;
    let sae = &setup.sae;
    let t = seq as f64;
    let flops = 2.0 * forward_flops(&cfg, t, 0.0, 2.0, t) + forward_flops(&cfg, t, 0.0, 1.0, t);
    for (name, head) in [("stage2_step_vocab", None), ("stage2_step_vocab_full", Some(resa_tune::Head::Full))] {
        if !wanted(name) {
            continue;
        }
        let at = Hookpoint::Residual(0).within(cfg.num_hidden_layers)?;
        let mut objective = SaeTuning::new(&sae, at, SaeGrad::Detach);
        if let Some(h) = head {
            objective = objective.with_head(h);
        }
        out.push(setup.measure(name, flops, &objective, opts)?);
    }
    Ok(out)
}

/// `sae_step`: one SAE training step (Adam) on 4096 activations.
fn sae_bench<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    if !wanted("sae_step") {
        return Ok(Vec::new());
    }
    let (big, repeats) = (opts.size == BenchSize::Gpu15b, opts.repeats);
    let (d, latents, n) = (1536, if big { 65_536 } else { 16_384 }, 4096);
    let sae = SparseCoder::<B>::random(SaeConfig::new(d, latents, 32), 0, device)?;
    let mut trainer =
        SaeTrainer::<Autodiff<B>>::new(sae, TrainConfig { optimizer: OptimizerKind::Adam, ..TrainConfig::default() })?;
    let acts = Tensor::<B, 2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    // Dense encoder forward and its two backward products; the decoder is k-sparse.
    let flops = 6.0 * (n * d * latents) as f64;
    let r = measure("sae_step", n, flops, repeats, || {
        trainer.step(acts.clone())?;
        Ok(())
    })?;
    Ok(vec![r])
}

/// A failure of the serving workloads (`serve_c1`, `serve_c8`), with what was being done.
fn serve(doing: &str, e: impl std::fmt::Display) -> Error {
    Error::Benchmark { workload: "serve".into(), message: format!("{doing}: {e}") }
}

/// `serve_c1` / `serve_c8`: the server on the toy model, 32 requests from 1 or 8 clients.
fn serve_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    if !(wanted("serve_c1") || wanted("serve_c8")) {
        return Ok(Vec::new());
    }
    let dir = resa_toy::model::default_dir();
    let model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, opts.dtype)?;
    let tokenizer = resa_qwen2::Tokenizer::from_dir(&dir)?;
    let server = resa_serve::Server::start(
        model,
        tokenizer,
        resa_serve::ServeOptions {
            port: 0,
            served_model_name: "toy".into(),
            max_batch: 8,
            ..resa_serve::ServeOptions::default()
        },
    )
    .map_err(|e| serve("starting the server", e))?;
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let questions: Vec<String> = resa_toy::world::ToyWorld::with_seed(0)
        .problems(resa_toy::world::Split::Test, 32)
        .into_iter()
        .map(|p| p.question)
        .collect();
    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(600)).build();
    let ask = |q: &str| -> Result<usize> {
        let body = serde_json::json!({
            "model": "toy", "messages": [{"role": "user", "content": q}], "max_tokens": 96, "temperature": 0,
        });
        let text = agent
            .post(&url)
            .send_string(&body.to_string())
            .and_then(|r| r.into_string().map_err(ureq::Error::from))
            .map_err(|e| serve("a request", e))?;
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| serve("an answer that is not JSON", e))?;
        answer["usage"]["completion_tokens"]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| serve("an answer without usage", text))
    };
    let mut out = Vec::new();
    for (name, clients) in [("serve_c1", 1usize), ("serve_c8", 8)] {
        if !wanted(name) {
            continue;
        }
        let round = || -> Result<usize> {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..clients)
                    .map(|c| {
                        let ask = &ask;
                        let questions = &questions;
                        scope.spawn(move || -> Result<usize> {
                            questions.iter().skip(c).step_by(clients).map(|q| ask(q)).sum()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().map_err(|_| serve("a client", "panicked"))?).sum()
            })
        };
        // Greedy decoding: every round generates the same tokens.
        let tokens = round()?;
        let r = measure(name, tokens, 0.0, opts.repeats, || round().map(|_| ()))?;
        out.push(r);
    }
    server.shutdown().map_err(|e| serve("stopping the server", e))?;
    Ok(out)
}
