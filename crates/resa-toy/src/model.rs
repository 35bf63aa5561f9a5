//! The built-in toy reasoning model: a small Qwen2 trained from scratch, every weight, with
//! next-token cross-entropy on the toy world's chain-of-thought solutions, so that it
//! answers held-out toy problems by reasoning inside `<think>…</think>`. It is the
//! offline stand-in for R1-Distill in `resa demo` (`cargo xtask toy-model` trains it; the
//! result is committed under `models/toy-qwen2`).

use std::path::{Path, PathBuf};

use crate::world::{self, Split, ToyWorld};
use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_eval::{EvalConfig, Report};
use resa_qwen2::safetensors_io::StoredDtype;
use resa_qwen2::{ChatMessage, Qwen2Config, Qwen2ForCausalLM, Sampling, Tokenizer};
use resa_tune::full::{FullTrainConfig, train_full};
use resa_tune::{LrSchedule, StepMetrics};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The folder of the committed toy model, inside this repository.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/toy-qwen2")
}

/// How the toy model is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyModelConfig {
    /// Architecture (vocabulary of the toy tokenizer).
    pub model: Qwen2Config,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Seed of the toy world.
    pub world_seed: u64,
    /// Training problems (chain-of-thought solutions).
    pub train_problems: usize,
    /// Tokens per training sequence (solutions are packed).
    pub ctx_len: usize,
    /// Optimisation.
    pub train: FullTrainConfig,
    /// Held-out test problems for the accuracy check.
    pub test_problems: usize,
}

impl Default for ToyModelConfig {
    fn default() -> Self {
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
            world_seed: 0,
            train_problems: 20_000,
            ctx_len: 128,
            train: FullTrainConfig {
                schedule: LrSchedule::Cosine { warmup_steps: 50, min_lr_ratio: 0.05 },
                steps: 900,
                ..FullTrainConfig::default()
            },
            test_problems: 200,
        }
    }
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
    /// Seconds of training.
    pub train_seconds: f64,
}

/// Renders a solved problem as the model sees it in training: the chat template with the
/// question as the user turn and the chain-of-thought solution as the assistant's.
pub fn cot_texts(tokenizer: &Tokenizer, world: &ToyWorld, n: usize) -> resa_qwen2::Result<Vec<String>> {
    world
        .problems(Split::Train, n)
        .iter()
        .map(|p| {
            tokenizer.apply_chat_template(
                &[ChatMessage::user(p.question.clone()), ChatMessage::assistant(p.cot_completion())],
                false,
            )
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
    let world = ToyWorld::with_seed(cfg.world_seed);
    let texts = cot_texts(&tokenizer, &world, cfg.train_problems)?;
    let chunks = pack(&tokenizer, &texts, cfg.ctx_len)?;
    tracing::info!(problems = texts.len(), sequences = chunks.len(), "toy model training data");
    let model = Qwen2ForCausalLM::<Autodiff<B>>::random(&cfg.model, cfg.init_seed, device, DType::F32);
    let parameters = burn::module::Module::num_params(&model);
    let started = std::time::Instant::now();
    let (mut first, mut last) = (None, 0.0f32);
    let model = train_full(model, &chunks, &cfg.train, &mut |m: &StepMetrics| {
        first.get_or_insert(m.loss);
        last = m.loss;
        on_step(m)
    })?;
    let train_seconds = started.elapsed().as_secs_f64();
    let model = burn::module::AutodiffModule::valid(&model);
    model.save_pretrained(&tmp, StoredDtype::F32)?;
    let accuracy = evaluate_toy(&model, &tokenizer, cfg.world_seed, cfg.test_problems, &tmp.join("eval"))?;
    std::fs::remove_dir_all(tmp.join("eval")).map_err(|e| Error::io(tmp.join("eval"), e))?;
    let report = ToyModelReport {
        config: cfg.clone(),
        parameters,
        first_loss: first.unwrap_or(f32::NAN),
        last_loss: last,
        test_accuracy_pct: accuracy.average_pct,
        train_seconds,
    };
    resa_publish::write_atomic(
        tmp.join("toy_model.json"),
        serde_json::to_string_pretty(&report).map_err(|e| Error::json("the toy-model report", e))?.as_bytes(),
    )?;
    resa_publish::replace_dir(&tmp, out)?;
    Ok(report)
}

/// Greedy accuracy of a toy model on `n` test problems of the world with `seed`, using the
/// evaluation runner (completions and report written into `eval_dir`).
pub fn evaluate_toy<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    tokenizer: &Tokenizer,
    seed: u64,
    n: usize,
    eval_dir: &Path,
) -> Result<Report> {
    let cfg = EvalConfig { sampling: Sampling::Greedy, max_new_tokens: 96, batch_size: 50, ..EvalConfig::default() };
    Ok(resa_eval::evaluate(model, tokenizer, &[crate::world::test_task(seed, n)], &cfg, eval_dir, "toy", |_| {})?)
}
