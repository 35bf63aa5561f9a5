//! A toy Tina: LoRA-GRPO ([`resa_tune::Grpo`]) on the toy model with the toy world's
//! training problems and an answer-only reward (1 when the completion's `<answer>` is the
//! problem's value, as the toy benchmark grades it; 0 otherwise) — the RL-trained source of
//! the paper's central experiment, in miniature. Writes a PEFT adapter (`out/adapter`),
//! checkpoints (`out/checkpoint-N`, resumable) and `out/metrics.jsonl` with the reward, the
//! KL to the base and the completion length of every step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::world::{Split, World};
use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_eval::Grader;
use resa_lora::LoraConfig;
use resa_qwen2::{ChatMessage, FinishReason, Qwen2ForCausalLM, Sampling, Tokenizer};
use resa_tune::{Grpo, GrpoConfig, StepMetrics, TuneConfig, TuneReport, train_adapters};
use serde::{Deserialize, Serialize};

use crate::compare::{Paired, ToyEvalConfig, paired};
use crate::error::{Error, Result};

/// Settings of a toy-Tina run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyTinaConfig {
    /// The toy model folder (the base policy and the reference).
    pub model: PathBuf,
    /// Run folder.
    pub out: PathBuf,
    /// The toy world of the model (its training problems and its test split).
    #[serde(default)]
    pub world: World,
    /// Seed of the problems, the adapter's initialisation, the data order and the sampling.
    pub seed: u64,
    /// Training problems (the toy world's train split: never a test problem).
    pub train_problems: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Prompts per step (each sampled `group_size` times).
    pub prompts_per_step: usize,
    /// Completions per prompt.
    pub group_size: usize,
    /// Token budget of a completion.
    pub max_new_tokens: usize,
    /// Sampling temperature of the completions.
    pub temperature: f32,
    /// KL weight β.
    pub beta: f64,
    /// Peak learning rate (constant).
    pub lr: f64,
    /// LoRA rank (alpha = 2 × rank, all seven linears, no dropout).
    pub lora_r: usize,
    /// Checkpoint interval.
    pub save_every: u64,
}

impl Default for ToyTinaConfig {
    fn default() -> Self {
        ToyTinaConfig {
            model: crate::model::default_dir(),
            out: PathBuf::from("toy-tina"),
            world: World::Arith,
            seed: 0,
            train_problems: 2000,
            steps: 100,
            prompts_per_step: 8,
            group_size: 8,
            max_new_tokens: 64,
            temperature: 1.0,
            beta: 0.04,
            lr: 2e-3,
            lora_r: 8,
            save_every: 25,
        }
    }
}

/// The toy world's prompt ids for `question` (the chat template's user turn and generation
/// prompt, as the toy benchmark builds them).
pub fn toy_prompt(tokenizer: &Tokenizer, question: &str) -> Result<Vec<u32>> {
    Ok(tokenizer.encode_chat(&[ChatMessage::user(question.to_string())], true)?)
}

/// The adapters a toy-Tina run trains.
pub fn toy_tina_lora(cfg: &ToyTinaConfig) -> LoraConfig {
    let mut lora = LoraConfig::new(cfg.lora_r, 2.0 * cfg.lora_r as f64, 0.0, &resa_lora::ALL_LINEAR);
    lora.base_model_name_or_path = Some(cfg.model.display().to_string());
    lora
}

/// Trains a toy Tina on backend `B` (autodiff on top); `on_step` sees every step (GRPO's
/// reward, KL and completion length are in [`StepMetrics::objective`]).
pub fn train_toy_tina<B: Backend>(
    cfg: &ToyTinaConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(&StepMetrics) -> bool,
) -> Result<TuneReport> {
    if cfg.train_problems < cfg.prompts_per_step || cfg.prompts_per_step == 0 {
        return Err(Error::Usage(format!(
            "toy Tina: {} training problems do not fill one step of {} prompts",
            cfg.train_problems, cfg.prompts_per_step
        )));
    }
    let tokenizer = Tokenizer::from_dir(&cfg.model)?;
    let pad = tokenizer.token_to_id(crate::world::PAD).ok_or_else(|| Error::Tokenizer {
        model: cfg.model.clone(),
        message: format!("no {} token", crate::world::PAD),
    })?;
    let mut model = Qwen2ForCausalLM::<Autodiff<B>>::from_pretrained(&cfg.model, device, DType::F32)?;
    let stop = resa_qwen2::stop_token_ids(&model.config().eos_token_ids, &tokenizer);

    // Prompts, left-padded to one length (the trainer's chunks), and their gold answers.
    let problems = cfg.world.generator(cfg.seed).problems(Split::Train, cfg.train_problems);
    let mut prompts = Vec::with_capacity(problems.len());
    let mut gold: HashMap<Vec<u32>, String> = HashMap::new();
    for p in &problems {
        let ids = toy_prompt(&tokenizer, &p.question)?;
        gold.insert(ids.clone(), p.answer.to_string());
        prompts.push(ids);
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let chunks: Vec<Vec<u32>> =
        prompts.into_iter().map(|p| std::iter::repeat_n(pad, width - p.len()).chain(p).collect()).collect();

    // The reward: the toy benchmark's grading of the completion decoded as the evaluation
    // records it ([`resa_eval::completion_of`]).
    let reward_tokenizer = tokenizer.clone();
    let stops = stop.clone();
    let reward = move |prompt: &[u32], completion: &[u32]| -> f32 {
        let Some(answer) = gold.get(prompt) else { return 0.0 };
        let reason = match completion.last() {
            Some(&t) if stops.contains(&t) => FinishReason::Stop(t),
            _ => FinishReason::MaxTokens,
        };
        let Ok(c) = resa_eval::completion_of(&reward_tokenizer, completion, reason) else { return 0.0 };
        if Grader::AnswerTag.grade(answer, &c.text).correct { 1.0 } else { 0.0 }
    };
    let grpo = Grpo::new(
        GrpoConfig {
            group_size: cfg.group_size,
            max_new_tokens: cfg.max_new_tokens,
            sampling: Sampling::Sample { temperature: cfg.temperature, top_p: 1.0, top_k: None },
            beta: cfg.beta,
            clip_eps: 0.2,
            pad_token_id: pad,
            stop_token_ids: stop,
            seed: cfg.seed,
        },
        Box::new(reward),
    )?;

    let lora = toy_tina_lora(cfg);
    resa_lora::attach(&mut model, &lora, cfg.seed)?;
    let model = resa_lora::trainable(model);
    let epochs = (cfg.steps as usize * cfg.prompts_per_step).div_ceil(chunks.len()).max(1);
    let tune = TuneConfig {
        lr: cfg.lr,
        epochs,
        max_steps: Some(cfg.steps),
        batch_size: cfg.prompts_per_step,
        grad_accum: 1,
        seed: cfg.seed,
        save_every: cfg.save_every,
        out: cfg.out.clone(),
        resume: true,
        ..TuneConfig::default()
    };
    let (_, report) = train_adapters(model, &lora, &grpo, &chunks, &tune, on_step)?;
    Ok(report)
}

/// The adapter folder a finished toy-Tina run wrote.
pub fn toy_tina_adapter(out: &Path) -> PathBuf {
    out.join("adapter")
}

/// What `resa toy-tina` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyTinaReport {
    /// The run's settings.
    pub config: ToyTinaConfig,
    /// The evaluation's settings.
    pub eval: ToyEvalConfig,
    /// The base model's evaluation.
    pub base: resa_eval::Report,
    /// The toy Tina's.
    pub tina: resa_eval::Report,
    /// toy Tina − base, paired by problem.
    pub paired: Paired,
    /// Mean reward of the first and the last 10% of the steps.
    pub reward: Option<(f64, f64)>,
}

/// Trains a toy Tina into `cfg.out` (resumed when it was cut short) and evaluates the base
/// and the toy Tina on the same held-out problems and seeds (`out/eval/base`,
/// `out/eval/toy-tina`); writes `out/report.json` and `out/report.md`.
pub fn run_toy_tina<B: Backend>(
    cfg: &ToyTinaConfig,
    eval: &ToyEvalConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(&StepMetrics) -> bool,
    on_eval: &mut dyn FnMut(&str, &resa_eval::Progress<'_>),
) -> Result<ToyTinaReport> {
    let adapter = toy_tina_adapter(&cfg.out);
    if !adapter.join("adapter_config.json").is_file() {
        train_toy_tina::<B>(cfg, device, on_step)?;
    }
    let task = cfg.world.test_task(eval.problems_seed, eval.problems);
    let base_ref = resa_pipeline::pipeline::ModelRef::new(cfg.model.display().to_string());
    let mut evaluation =
        resa_pipeline::evaluation::Evaluation::<B>::new(&base_ref, vec![task], eval.eval_config(), device, DType::F32)?;
    let base_dir = cfg.out.join("eval/base");
    let tina_dir = cfg.out.join("eval/toy-tina");
    let base = evaluation.run(&base_dir, "toy model (base)", |p| on_eval("base", p))?;
    evaluation.with_adapter(&adapter)?;
    let tina = evaluation.run(&tina_dir, "toy Tina (LoRA-GRPO)", |p| on_eval("toy Tina", p))?;
    let paired = paired(&base_dir.join("completions.jsonl"), &tina_dir.join("completions.jsonl"))?;
    let report =
        ToyTinaReport { config: cfg.clone(), eval: eval.clone(), base, tina, paired, reward: reward_ends(&cfg.out) };
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::json("the toy Tina report", e))?;
    resa_publish::write_atomic(cfg.out.join("report.json"), json.as_bytes())?;
    resa_publish::write_atomic(cfg.out.join("report.md"), toy_tina_markdown(&report).as_bytes())?;
    Ok(report)
}

/// Mean reward of the first and the last tenth of the steps in `out/metrics.jsonl`.
fn reward_ends(out: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).ok()?;
    let rewards: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("reward")?.as_f64())
        .collect();
    let n = (rewards.len() / 10).max(1);
    if rewards.is_empty() {
        return None;
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    Some((mean(&rewards[..n]), mean(&rewards[rewards.len() - n..])))
}

/// The report as Markdown.
pub fn toy_tina_markdown(r: &ToyTinaReport) -> String {
    let score = |rep: &resa_eval::Report| {
        rep.benches.first().map_or("—".to_string(), |b| format!("{:.2} ± {:.2}", b.pass_at_1_pct, b.stderr_pct))
    };
    let mut s = String::from("# Toy Tina: LoRA-GRPO on the toy model\n\n");
    s.push_str(&format!(
        "{} steps of {} prompts × {} completions (temperature {}, β {}, lr {}, LoRA r {}); evaluated on {} held-out \
         problems × {} samples (same seeds for both).\n\n",
        r.config.steps,
        r.config.prompts_per_step,
        r.config.group_size,
        r.config.temperature,
        r.config.beta,
        r.config.lr,
        r.config.lora_r,
        r.eval.problems,
        r.eval.samples
    ));
    s.push_str("| model | Pass@1 (%) |\n|---|---|\n");
    s.push_str(&format!(
        "| toy model (base) | {} |\n| toy Tina (LoRA-GRPO) | {} |\n\n",
        score(&r.base),
        score(&r.tina)
    ));
    s.push_str(&format!(
        "Paired difference (toy Tina − base, per problem): {:+.2} ± {:.2} points over {} problems — {}.\n",
        r.paired.diff_pct,
        r.paired.stderr_pct,
        r.paired.problems,
        if r.paired.above(2.0) { "above two standard errors" } else { "not above two standard errors" }
    ));
    if let Some((a, b)) = r.reward {
        s.push_str(&format!("\nTraining reward: {a:.3} (first tenth of the steps) → {b:.3} (last tenth).\n"));
    }
    s
}
