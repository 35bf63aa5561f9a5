//! The built-in toy reasoning models: a small Qwen2 trained from scratch, every weight, with
//! next-token cross-entropy on a toy world's solutions, so that it answers held-out toy
//! problems inside `<think>…</think>`. They are the offline stand-ins for R1-Distill
//! (`cargo xtask toy-model [--world NAME]` trains one; the results are committed under
//! `models/`): `toy-qwen2` (world `arith`, chain-of-thought solutions only; `resa demo`)
//! and `toy-qwen2-elicit` (world `elicit`, a mixture where a share of the solutions skip
//! the reasoning; the toy paper's).

use std::path::{Path, PathBuf};

use crate::world::{self, ReasoningProfile, Split, World};
use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_eval::{EvalConfig, Report};
use resa_qwen2::safetensors_io::StoredDtype;
use resa_qwen2::{ChatMessage, Qwen2Config, Qwen2ForCausalLM, Sampling, Tokenizer};
use resa_tune::full::{FullTrainConfig, train_full};
use resa_tune::{LrSchedule, StepMetrics};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The folder of the committed toy model of the `arith` world (the demo's), inside this
/// repository.
pub fn default_dir() -> PathBuf {
    World::Arith.model_dir()
}

/// How the toy model is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyModelConfig {
    /// Architecture (vocabulary of the toy tokenizer).
    pub model: Qwen2Config,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// The toy world.
    #[serde(default)]
    pub world: World,
    /// Seed of the toy world.
    pub world_seed: u64,
    /// Training problems.
    pub train_problems: usize,
    /// Tokens per training sequence (solutions are packed).
    pub ctx_len: usize,
    /// Optimisation on the chain-of-thought solutions.
    pub train: FullTrainConfig,
    /// A second phase on a mixture where a share of the solutions skip the reasoning
    /// (`elicit`); none for `arith`.
    #[serde(default)]
    pub mixture: Option<MixturePhase>,
    /// Held-out test problems for the accuracy check.
    pub test_problems: usize,
}

impl Default for ToyModelConfig {
    fn default() -> Self {
        Self::for_world(World::Arith)
    }
}

impl ToyModelConfig {
    /// How the committed toy model of `world` is made.
    pub fn for_world(world: World) -> Self {
        ToyModelConfig {
            model: Qwen2Config {
                vocab_size: world::vocab_size(),
                hidden_size: 128,
                intermediate_size: 384,
                num_hidden_layers: 6,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 32,
                max_position_embeddings: 512,
                rms_norm_eps: 1e-6,
                rope_theta: 10000.0,
                tie_word_embeddings: true,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
                torch_dtype: Some("float32".into()),
            },
            init_seed: 0,
            world,
            world_seed: 0,
            train_problems: 20_000,
            ctx_len: 128,
            train: FullTrainConfig {
                schedule: LrSchedule::Cosine { warmup_steps: 50, min_lr_ratio: 0.05 },
                steps: 900,
                ..FullTrainConfig::default()
            },
            mixture: (world.direct_share() > 0.0).then(|| MixturePhase {
                direct_share: world.direct_share(),
                train: FullTrainConfig {
                    lr: 1e-3,
                    schedule: LrSchedule::Cosine { warmup_steps: 20, min_lr_ratio: 0.1 },
                    steps: 400,
                    seed: 1,
                    ..FullTrainConfig::default()
                },
            }),
            test_problems: 200,
        }
    }
}

/// The second phase of a toy model's training: the same training problems, a share
/// `direct_share` of them (drawn with the world's seed) with the answer alone inside
/// `<think>`, the rest with their chain of thought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixturePhase {
    /// The share of solutions that skip the reasoning.
    pub direct_share: f64,
    /// Optimisation (a fresh optimizer state).
    pub train: FullTrainConfig,
}

/// What training the toy model measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyModelReport {
    /// The configuration it was made with.
    pub config: ToyModelConfig,
    /// Parameters.
    pub parameters: usize,
    /// Cross-entropy of the first and last step.
    pub first_loss: f32,
    /// Last step's loss.
    pub last_loss: f32,
    /// Greedy accuracy on the held-out test problems, in percent (`<answer>` tag graded).
    pub test_accuracy_pct: f64,
    /// Sampled Pass@1 on them (the toy paper's evaluation: 4 samples, temperature 0.6,
    /// top-p 0.95), percent.
    #[serde(default)]
    pub sampled_pass_at_1_pct: Option<f64>,
    /// How the sampled completions answer: the share that reasons, and the accuracy when it
    /// does and when it does not.
    #[serde(default)]
    pub sampled_profile: Option<ReasoningProfile>,
    /// Seconds of training.
    pub train_seconds: f64,
}

/// Renders the first `n` training problems of `world` (with `seed`) as the model sees them
/// in training: the chat template with the question as the user turn and the solution as
/// the assistant's — the answer alone inside `<think>` for a share `direct_share` of them
/// (drawn with the world's seed), the chain of thought for the rest.
pub fn training_texts(
    tokenizer: &Tokenizer,
    world: World,
    seed: u64,
    n: usize,
    direct_share: f64,
) -> resa_qwen2::Result<Vec<String>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6d69_7874);
    world
        .generator(seed)
        .problems(Split::Train, n)
        .iter()
        .map(|p| {
            let direct = rng.random::<f64>() < direct_share;
            let solution = if direct { p.direct_completion() } else { p.cot_completion() };
            tokenizer
                .apply_chat_template(&[ChatMessage::user(p.question.clone()), ChatMessage::assistant(solution)], false)
        })
        .collect()
}

/// Tokenises `texts` (no special tokens added: the template wrote them), joins them and
/// cuts the stream into `ctx_len`-token sequences (the last partial one dropped).
pub fn pack(tokenizer: &Tokenizer, texts: &[String], ctx_len: usize) -> resa_qwen2::Result<Vec<Vec<u32>>> {
    let mut stream = Vec::new();
    for t in texts {
        stream.extend(tokenizer.encode(t, false)?);
    }
    Ok(stream.chunks_exact(ctx_len).map(<[u32]>::to_vec).collect())
}

/// Trains the toy model on backend `B` and writes it to `out` (config.json,
/// model.safetensors in f32, tokenizer.json, tokenizer_config.json, toy_model.json with the
/// report). `on_step` sees every optimizer step.
pub fn train_toy_model<B: Backend>(
    cfg: &ToyModelConfig,
    device: &B::Device,
    out: &Path,
    on_step: &mut dyn FnMut(&StepMetrics) -> bool,
) -> Result<ToyModelReport> {
    let tmp = resa_publish::temp_sibling(out, "tmp")?;
    world::write_tokenizer(&tmp)?;
    let tokenizer = Tokenizer::from_dir(&tmp)?;
    let model = Qwen2ForCausalLM::<Autodiff<B>>::random(&cfg.model, cfg.init_seed, device, DType::F32);
    let parameters = burn::module::Module::num_params(&model);
    let started = std::time::Instant::now();
    let (mut first, mut last) = (None, 0.0f32);
    let phases = std::iter::once((0.0, &cfg.train)).chain(cfg.mixture.as_ref().map(|m| (m.direct_share, &m.train)));
    let mut model = model;
    for (i, (direct_share, train)) in phases.enumerate() {
        let texts = training_texts(&tokenizer, cfg.world, cfg.world_seed, cfg.train_problems, direct_share)?;
        let chunks = pack(&tokenizer, &texts, cfg.ctx_len)?;
        tracing::info!(
            phase = i,
            direct_share,
            problems = texts.len(),
            sequences = chunks.len(),
            "toy model training data"
        );
        model = train_full(model, &chunks, train, &mut |m: &StepMetrics| {
            first.get_or_insert(m.loss);
            last = m.loss;
            on_step(m)
        })?;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let model = burn::module::AutodiffModule::valid(&model);
    model.save_pretrained(&tmp, StoredDtype::F32)?;
    let task = cfg.world.test_task(cfg.world_seed, cfg.test_problems);
    let accuracy = evaluate_toy(&model, &tokenizer, &task, &greedy_eval(), &tmp.join("eval"))?;
    let sampled_eval = crate::compare::ToyEvalConfig::default();
    let sampled = evaluate_toy(&model, &tokenizer, &task, &sampled_eval.eval_config(), &tmp.join("eval-sampled"))?;
    let profile =
        world::reasoning_profile(&resa_eval::read_completions(&tmp.join("eval-sampled").join("completions.jsonl"))?);
    for dir in ["eval", "eval-sampled"] {
        std::fs::remove_dir_all(tmp.join(dir)).map_err(|e| Error::io(tmp.join(dir), e))?;
    }
    let report = ToyModelReport {
        config: cfg.clone(),
        parameters,
        first_loss: first.unwrap_or(f32::NAN),
        last_loss: last,
        test_accuracy_pct: accuracy.average_pct,
        sampled_pass_at_1_pct: Some(sampled.average_pct),
        sampled_profile: Some(profile),
        train_seconds,
    };
    resa_publish::write_atomic(
        tmp.join("toy_model.json"),
        serde_json::to_string_pretty(&report).map_err(|e| Error::json("the toy-model report", e))?.as_bytes(),
    )?;
    resa_publish::replace_dir(&tmp, out)?;
    Ok(report)
}

/// The greedy evaluation of a toy model's report.
pub fn greedy_eval() -> EvalConfig {
    EvalConfig { sampling: Sampling::Greedy, max_new_tokens: 96, batch_size: 50, ..EvalConfig::default() }
}

/// Accuracy of a toy model on `task` with the evaluation runner (completions and report
/// written into `eval_dir`).
pub fn evaluate_toy<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    tokenizer: &Tokenizer,
    task: &resa_eval::Task,
    cfg: &EvalConfig,
    eval_dir: &Path,
) -> Result<Report> {
    Ok(resa_eval::evaluate(model, tokenizer, std::slice::from_ref(task), cfg, eval_dir, "toy", |_| {})?)
}
