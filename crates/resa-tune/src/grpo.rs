//! LoRA-GRPO — the RL that makes Tina, the paper's source models — as an [`Objective`] of the
//! same trainer: for each prompt of a micro-batch a group of completions is sampled from the
//! current policy (the model with its adapters), each is rewarded (the caller's function:
//! 1 for a correct final answer, 0 otherwise, in Tina), rewards are normalised within the
//! group into advantages, and the loss is GRPO's clipped policy-gradient objective with a
//! KL penalty to the reference policy — the same model with its adapters off, as in Tina:
//!
//! ```text
//! A_ij   = (r_ij − mean_j r_ij) / (std_j r_ij + 1e-4)
//! ratio  = exp(log π(t) − log π_old(t))                  (π_old = π at sampling: ratio 1)
//! kl     = exp(log π_ref(t) − log π(t)) − (log π_ref(t) − log π(t)) − 1     (the k3 estimator)
//! loss   = mean_ij  mean_t∈c_ij  [ −min(ratio·A_ij, clip(ratio, 1−ε, 1+ε)·A_ij) + β·kl ]
//! ```
//!
//! (TRL's `GRPOTrainer` with one optimisation step per sampled batch, its `grpo` loss type.)
//! The trainer's chunks are the prompts, left-padded with `pad_token_id` to one length; the
//! samples are drawn with a seed per (step, prompt, sample), so a resumed run samples what
//! the uninterrupted one did.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::AutodiffModule;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};
use resa_qwen2::{AdapterMode, ForwardInput, GenerationConfig, Hooks, Qwen2ForCausalLM, Sampling, generate_seeded};

use crate::error::{Error, Result};
use crate::objective::Objective;
use crate::stage2::Head;

/// Settings of [`Grpo`].
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoConfig {
    /// Completions sampled per prompt (the group).
    pub group_size: usize,
    /// Token budget of a completion.
    pub max_new_tokens: usize,
    /// How completions are sampled.
    pub sampling: Sampling,
    /// The KL penalty's weight β.
    pub beta: f64,
    /// The ratio's clip range ε.
    pub clip_eps: f64,
    /// The padding id the prompts are left-padded with (and completions right-padded with).
    pub pad_token_id: u32,
    /// Ids that end a completion (the tokenizer's EOS).
    pub stop_token_ids: Vec<u32>,
    /// Seed of the sampling (with the step, the prompt and the sample index).
    pub seed: u64,
}

impl Default for GrpoConfig {
    /// Tina's: 8 completions per prompt at temperature 1, β 0.04 and ε 0.2 (TRL's defaults).
    fn default() -> Self {
        GrpoConfig {
            group_size: 8,
            max_new_tokens: 256,
            sampling: Sampling::Sample { temperature: 1.0, top_p: 1.0, top_k: None },
            beta: 0.04,
            clip_eps: 0.2,
            pad_token_id: 0,
            stop_token_ids: Vec::new(),
            seed: 0,
        }
    }
}

impl GrpoConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.group_size < 2 {
            return Err(Error::option(
                "group_size",
                format!("{}: a group needs at least 2 completions", self.group_size),
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(Error::option("max_new_tokens", "at least 1"));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::option("beta", format!("{}: a finite weight ≥ 0", self.beta)));
        }
        if !(self.clip_eps.is_finite() && self.clip_eps > 0.0 && self.clip_eps < 1.0) {
            return Err(Error::option("clip_eps", format!("{}: in (0, 1)", self.clip_eps)));
        }
        if let Sampling::Sample { temperature, top_p, .. } = self.sampling
            && !(temperature.is_finite() && temperature > 0.0 && top_p > 0.0 && top_p <= 1.0)
        {
            return Err(Error::option("sampling", format!("temperature {temperature}, top_p {top_p}")));
        }
        Ok(())
    }
}

/// The caller's reward of one completion: `(prompt ids without padding, completion ids) →
/// reward` (Tina: 1 for a correct final answer, else 0).
pub type Reward<'a> = dyn Fn(&[u32], &[u32]) -> f32 + Send + Sync + 'a;

/// What a step's samples looked like ([`Grpo`] adds them to the step's metrics line).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Stats {
    completions: usize,
    reward_sum: f64,
    kl_sum: f64,
    kl_tokens: usize,
    length_sum: usize,
    groups: usize,
    flat_groups: usize,
}

/// LoRA-GRPO ([module docs](self)).
pub struct Grpo<'a> {
    state: Held<'a>,
}

/// What a [`Grpo`] holds: its own state, or (a data-parallel replica) the state of the
/// objective it replicates, so that every replica shares the reward, the step and the
/// statistics.
enum Held<'a> {
    Own(GrpoState<'a>),
    Shared(&'a GrpoState<'a>),
}

struct GrpoState<'a> {
    cfg: GrpoConfig,
    reward: Box<Reward<'a>>,
    step: AtomicU64,
    stats: Mutex<Stats>,
}

impl<'a> Grpo<'a> {
    fn state(&self) -> &GrpoState<'a> {
        match &self.state {
            Held::Own(state) => state,
            Held::Shared(state) => state,
        }
    }

    /// The objective with its settings and reward (settings checked).
    pub fn new(cfg: GrpoConfig, reward: Box<Reward<'a>>) -> Result<Self> {
        cfg.validate()?;
        let state = GrpoState { cfg, reward, step: AtomicU64::new(0), stats: Mutex::new(Stats::default()) };
        Ok(Grpo { state: Held::Own(state) })
    }

    /// The settings.
    pub fn config(&self) -> &GrpoConfig {
        &self.state().cfg
    }

    fn seed(&self, step: u64, prompt: &[u32], sample: usize) -> u64 {
        // FNV-1a over the seed, the step, the prompt and the sample index.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |x: u64| {
            for b in x.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(self.state().cfg.seed);
        eat(step);
        for &t in prompt {
            eat(u64::from(t));
        }
        eat(sample as u64);
        h
    }
}

/// Group-normalised advantages `(r − mean) / (std + 1e-4)` of each group of `g` rewards
/// (`torch.std`, unbiased, as TRL), and how many groups are flat (all rewards equal).
fn group_advantages(rewards: &[f32], g: usize) -> (Vec<f32>, usize) {
    let mut advantages = Vec::with_capacity(rewards.len());
    let mut flat = 0;
    for group in rewards.chunks(g) {
        let mean = group.iter().sum::<f32>() / g as f32;
        let var = group.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (g - 1) as f32;
        let std = var.sqrt();
        flat += usize::from(std == 0.0);
        advantages.extend(group.iter().map(|r| (r - mean) / (std + 1e-4)));
    }
    (advantages, flat)
}

/// Log-probabilities of `targets` under `logits` `[n, len, vocab]` → `[n, len]` (f32).
fn token_logp<B: AutodiffBackend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [n, len, _] = logits.dims();
    log_softmax(logits.cast(DType::F32), 2).gather(2, targets.reshape([n, len, 1])).reshape([n, len])
}

impl<B: AutodiffBackend> Objective<B> for Grpo<'_> {
    fn name(&self) -> &'static str {
        "grpo"
    }

    fn check(&self, model: &Qwen2ForCausalLM<B>) -> Result<()> {
        let vocab = model.config().vocab_size;
        if let Some(bad) = self
            .state()
            .cfg
            .stop_token_ids
            .iter()
            .chain([&self.state().cfg.pad_token_id])
            .find(|&&t| t as usize >= vocab)
        {
            return Err(Error::option("stop_token_ids", format!("id {bad} is outside the vocabulary ({vocab} ids)")));
        }
        Ok(())
    }

    fn begin_step(&self, step: u64) {
        self.state().step.store(step, Ordering::SeqCst);
    }

    fn loss(
        &self,
        model: &Qwen2ForCausalLM<B>,
        input_ids: Tensor<B, 2, Int>,
        adapters: AdapterMode,
    ) -> Result<Tensor<B, 1>> {
        let [b, s] = input_ids.dims();
        let device = input_ids.device();
        let ids: Vec<i64> = input_ids
            .into_data()
            .convert::<i64>()
            .to_vec()
            .map_err(|e| Error::Internal(format!("token ids: {e:?}")))?;
        let pad = self.state().cfg.pad_token_id;
        let prompts: Vec<Vec<u32>> = ids
            .chunks(s)
            .map(|row| row.iter().map(|&t| t as u32).skip_while(|&t| t == pad).collect::<Vec<u32>>())
            .collect();
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::option("data", format!("prompt {i} of the micro-batch is all padding")));
        }
        let step = self.state().step.load(Ordering::SeqCst);
        let g = self.state().cfg.group_size;

        // Sample the groups from the current policy (adapters on, no dropout, no graph).
        let policy = model.valid();
        let mut rows = Vec::with_capacity(b * g);
        let mut seeds = Vec::with_capacity(b * g);
        for p in &prompts {
            for j in 0..g {
                rows.push(p.clone());
                seeds.push(self.seed(step, p, j));
            }
        }
        let gen_cfg = GenerationConfig {
            max_new_tokens: self.state().cfg.max_new_tokens,
            sampling: self.state().cfg.sampling,
            seed: self.state().cfg.seed,
            stop_token_ids: self.state().cfg.stop_token_ids.clone(),
            pad_token_id: pad,
        };
        let completions = generate_seeded(&policy, &rows, &seeds, &gen_cfg)?;

        // Rewards and group-normalised advantages.
        let rewards: Vec<f32> =
            rows.iter().zip(&completions).map(|(p, c)| (self.state().reward)(p, &c.ids)).collect::<Vec<_>>();
        let (advantages, flat) = group_advantages(&rewards, g);

        // Prompt + completion, right-padded (causal attention: padding after a token does not
        // change it), with a mask over the completion tokens.
        let n = rows.len();
        let len = rows.iter().zip(&completions).map(|(p, c)| p.len() + c.ids.len()).max().unwrap_or(2).max(2);
        let mut seq = vec![i64::from(pad); n * len];
        let mut mask = vec![0f32; n * (len - 1)];
        let mut lengths = 0;
        for (k, (p, c)) in rows.iter().zip(&completions).enumerate() {
            for (t, &id) in p.iter().chain(&c.ids).enumerate() {
                seq[k * len + t] = i64::from(id);
            }
            // Position t predicts token t + 1: the completion's tokens are p.len() .. p.len()+c.
            for t in p.len().saturating_sub(1)..(p.len() + c.ids.len()).saturating_sub(1) {
                mask[k * (len - 1) + t] = 1.0;
            }
            lengths += c.ids.len();
        }
        let seq = Tensor::<B, 2, Int>::from_data(TensorData::new(seq, [n, len]), &device);
        let inputs = seq.clone().narrow(1, 0, len - 1);
        let targets = seq.narrow(1, 1, len - 1);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [n, len - 1]), &device);
        let tokens_per_row = mask.clone().sum_dim(1).clamp_min(1.0); // [n, 1]

        // The policy's log-probabilities and the reference's (adapters off, detached); on a CPU
        // backend at once, each on its own core.
        let logp_with = |mode: AdapterMode| -> Result<Tensor<B, 2>> {
            let input = ForwardInput::new(inputs.clone()).with_adapters(mode);
            Ok(token_logp(crate::stage2::logits(model, input, Head::Full, &Hooks::default())?, targets.clone()))
        };
        let (logp, ref_logp) = if resa_qwen2::on_host::<B>(&device) {
            rayon::join(|| logp_with(adapters), || logp_with(AdapterMode::Off))
        } else {
            (logp_with(adapters), logp_with(AdapterMode::Off))
        };
        let (logp, ref_logp) = (logp?, ref_logp?.detach());

        let adv = Tensor::<B, 2>::from_data(TensorData::new(advantages, [n, 1]), &device);
        let ratio = (logp.clone() - logp.clone().detach()).exp();
        let eps = self.state().cfg.clip_eps as f32;
        let unclipped = ratio.clone() * adv.clone();
        let clipped = ratio.clamp(1.0 - eps, 1.0 + eps) * adv;
        let pg = unclipped.min_pair(clipped).neg();
        let diff = ref_logp - logp;
        let kl = diff.clone().exp() - diff - 1.0;
        let per_token = pg + kl.clone().mul_scalar(self.state().cfg.beta as f32);
        let per_row = (per_token * mask.clone()).sum_dim(1) / tokens_per_row;
        let loss = per_row.mean();

        let kl_total: f32 = (kl.detach() * mask.clone()).sum().into_scalar().elem();
        let mask_total: f32 = mask.sum().into_scalar().elem();
        if let Ok(mut st) = self.state().stats.lock() {
            st.completions += n;
            st.reward_sum += rewards.iter().map(|&r| f64::from(r)).sum::<f64>();
            st.kl_sum += f64::from(kl_total);
            st.kl_tokens += mask_total as usize;
            st.length_sum += lengths;
            st.groups += b;
            st.flat_groups += flat;
        }
        Ok(loss)
    }

    fn step_metrics(&self) -> Vec<(&'static str, f64)> {
        let st = self.state().stats.lock().map(|mut st| std::mem::take(&mut *st)).unwrap_or_default();
        if st.completions == 0 {
            return Vec::new();
        }
        vec![
            ("reward", st.reward_sum / st.completions as f64),
            ("kl", st.kl_sum / st.kl_tokens.max(1) as f64),
            ("completion_length", st.length_sum as f64 / st.completions as f64),
            ("flat_groups", st.flat_groups as f64 / st.groups.max(1) as f64),
        ]
    }

    fn to_device(&self, _device: &B::Device) -> Box<dyn Objective<B> + '_> {
        Box::new(Grpo { state: Held::Shared(self.state()) })
    }
}
