//! The small-model path: the toy model's own training step, a LoRA-GRPO step of the toy Tina
//! and a toy evaluation — workloads where burn's per-operation overhead, not the products,
//! is the cost. They run on the committed elicitable toy model (`models/toy-qwen2-elicit`)
//! or, for the training step, a random model of its shape.

use burn::backend::Autodiff;
use burn::tensor::DType;
use burn::tensor::backend::Backend;
use resa_qwen2::{Qwen2ForCausalLM, Tokenizer};
use resa_toy::compare::ToyEvalConfig;
use resa_toy::tina::{ToyTinaConfig, train_toy_tina};
use resa_toy::world::World;
use resa_tune::full::{FullTrainConfig, train_full};

use crate::{BenchOptions, BenchResult, Result, StepTimes, forward_flops, ids, measure};

/// Held-out problems of `toy_eval`.
const EVAL_PROBLEMS: usize = 64;

/// A temporary folder of this process for workload `name` (removed when dropped).
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str, run: usize) -> Self {
        Scratch(std::env::temp_dir().join(format!("resa-bench-{name}-{}-{run}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `toy_train_step`, `grpo_step`, `toy_eval`.
pub(crate) fn toy_benches<B: Backend>(
    device: &B::Device,
    opts: &BenchOptions,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    let steps = opts.repeats.max(1) + 1;
    if wanted("toy_train_step") {
        // The toy model's recipe: batch 16 × 128 tokens, AdamW, clipping, cosine schedule.
        let recipe = resa_toy::model::ToyModelConfig::for_world(World::Elicit);
        let model = Qwen2ForCausalLM::<Autodiff<B>>::random(&recipe.model, recipe.init_seed, device, DType::F32);
        let (batch, ctx) = (recipe.train.batch_size, recipe.ctx_len);
        let chunks: Vec<Vec<u32>> = (0..batch * steps).map(|i| ids(ctx, recipe.model.vocab_size, i as u64)).collect();
        let cfg = FullTrainConfig { steps: steps as u64, ..recipe.train.clone() };
        let mut times = StepTimes::default();
        train_full(model, &chunks, &cfg, &mut |m| {
            times.record(m.tokens, m.tokens_per_second);
            true
        })?;
        // Forward and backward: three times the forward's FLOPs (every sequence through the head).
        let layers = recipe.model.num_hidden_layers as f64;
        let flops = 3.0 * batch as f64 * forward_flops(&recipe.model, ctx as f64, 0.0, layers, ctx as f64);
        out.push(times.result("toy_train_step", batch * ctx, flops));
    }
    if wanted("grpo_step") {
        // One toy-Tina step: 8 prompts × 8 sampled completions of up to 64 tokens, rewards,
        // the GRPO loss's forward and backward, AdamW on the LoRA.
        let scratch = Scratch::new("grpo_step", 0);
        let cfg = ToyTinaConfig {
            model: World::Elicit.model_dir(),
            world: World::Elicit,
            steps: steps as u64,
            save_every: 1_000_000,
            out: scratch.0.clone(),
            ..ToyTinaConfig::default()
        };
        let completions = cfg.prompts_per_step * cfg.group_size;
        let mut times = StepTimes::default();
        train_toy_tina::<B>(&cfg, device, &mut |m| {
            times.record(m.tokens, m.tokens_per_second);
            true
        })?;
        out.push(times.result("grpo_step", completions, 0.0));
    }
    if wanted("toy_eval") {
        // The toy paper's evaluation settings (4 samples at temperature 0.6, top-p 0.95, up
        // to 96 tokens) on 64 held-out problems of the committed elicit model.
        let dir = World::Elicit.model_dir();
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let model = Qwen2ForCausalLM::<B>::from_pretrained(&dir, device, DType::F32)?;
        let eval = ToyEvalConfig::default();
        let task = World::Elicit.test_task(eval.problems_seed, EVAL_PROBLEMS);
        let mut run = 0;
        let r = measure("toy_eval", EVAL_PROBLEMS * eval.samples, 0.0, opts.repeats, || {
            run += 1;
            // A fresh folder each run: an evaluation resumes from the completions it finds.
            let scratch = Scratch::new("toy_eval", run);
            resa_toy::model::evaluate_toy(&model, &tokenizer, &task, &eval.eval_config(), &scratch.0)?;
            Ok(())
        })?;
        out.push(r);
    }
    Ok(out)
}
