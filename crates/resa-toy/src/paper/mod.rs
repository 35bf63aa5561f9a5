//! The paper's central claim in miniature (`resa reproduce toy-paper`): on a toy model, an
//! RL-trained source (a toy Tina, [`crate::tina`]) and the toy analogues of Tables 3–6 —
//! SAE-Tuning with the RL source's SAE into the untouched base, CoT-free and CoT-based SFT,
//! the SAE's training mode, the source's RL checkpoint (the base itself as source:
//! Resa-STILL-v4 and -v5), an adapter trained on a sibling model, and the hookpoint layer
//! with the source's reasoning-feature counts and both layer mixtures — over several seeds.
//!
//! A seed changes everything downstream of the base model (the toy Tina's run, the SAEs, the
//! adapters, the data and its order, the evaluation's samples); the held-out problems are
//! the same for every seed, and every model of one seed is evaluated with the same sampling
//! seeds, so each of the paper's claims is a paired comparison per seed, reported per seed
//! and as "holds in k of N" — whatever it shows. The decision rules are in
//! `docs/toy-worlds.md`.
//!
//! Writes `report.md`, `report.json` (`rows`, `claims`, `summary`: a stable shape), each
//! seed's artifacts under `seed-N/` (figures in `seed-N/figures/`) and the sibling model
//! under `sibling/`; a rerun reuses every finished stage.

mod claims;
mod report;
mod runs;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use serde::{Deserialize, Serialize};

pub use claims::{Claim, ClaimSummary, Ratio};

use crate::compare::ToyEvalConfig;
use crate::demo::ToyStages;
use crate::error::{Error, Result};
use crate::tina::ToyTinaConfig;
use crate::world::{self, World};
use resa_pipeline::PipelineEvent;

/// Settings of the toy paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyPaperConfig {
    /// The toy world (its problems; the model should be this world's).
    pub world: World,
    /// The toy model (the base: Table 3's R1-Distill).
    pub model: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Seeds 0, 1, …, `seeds − 1`.
    pub seeds: usize,
    /// Seeds run at once (threads; each keeps about one core busy).
    pub jobs: usize,
    /// CoT-free rows (trigger = elicitation data, as in Resa-STILL-v1).
    pub train_rows: usize,
    /// The toy Tina (its `out` is `seed-N/toy-tina`, its seed the run's).
    pub tina: ToyTinaConfig,
    /// The toy Tina's checkpoints used as sources for Table 4 (0: the base model itself);
    /// the last step is the main row.
    pub source_steps: Vec<u64>,
    /// The evaluation (problems, samples, sampling; its sampling seed is the run's).
    pub eval: ToyEvalConfig,
    /// Stage I and Stage II of every SAE-Tuning and SFT run (the demo's settings; the
    /// hookpoint is that of Tables 3–5).
    #[serde(flatten)]
    pub stages: ToyStages,
    /// Table 6: the layers swept (empty: no sweep).
    pub sweep_layers: Vec<usize>,
    /// Table 5: full-parameter steps that make the sibling model (the base trained further
    /// on another seed's training text); 0 leaves Table 5 out.
    pub sibling_steps: u64,
}

impl Default for ToyPaperConfig {
    fn default() -> Self {
        Self::for_world(World::Elicit)
    }
}

impl ToyPaperConfig {
    /// The toy paper on `world` with its committed toy model.
    pub fn for_world(world: World) -> Self {
        ToyPaperConfig {
            world,
            model: world.model_dir(),
            out: PathBuf::from("runs/toy-paper"),
            seeds: 3,
            jobs: 3,
            train_rows: 2000,
            tina: ToyTinaConfig { world, ..ToyTinaConfig::default() },
            source_steps: vec![0, 25, 50],
            eval: ToyEvalConfig::default(),
            stages: ToyStages::default(),
            sweep_layers: (0..6).collect(),
            sibling_steps: 200,
        }
    }

    /// The reduced run (`--quick`, CI): every table, two seeds, few steps, few problems.
    pub fn quick(self) -> Self {
        ToyPaperConfig {
            seeds: 2,
            jobs: 2,
            train_rows: 200,
            tina: ToyTinaConfig {
                train_problems: 64,
                steps: 4,
                prompts_per_step: 2,
                group_size: 4,
                save_every: 2,
                ..self.tina
            },
            source_steps: vec![0, 2],
            eval: ToyEvalConfig { problems: 8, samples: 2, max_new_tokens: 64, ..self.eval },
            stages: ToyStages { num_latents: 256, stage1_steps: 5, stage2_steps: 4, ..self.stages },
            sweep_layers: vec![1, 3],
            sibling_steps: 3,
            ..self
        }
    }

    /// The seeds, in order.
    pub fn seed_list(&self) -> Vec<u64> {
        (0..self.seeds as u64).collect()
    }

    /// A seed's folder.
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.out.join(format!("seed-{seed}"))
    }

    /// Refuses settings that cannot run, before anything runs.
    pub fn validate(&self) -> Result<()> {
        if !self.model.join("config.json").is_file() {
            return Err(Error::Usage(format!(
                "{}: no toy model there (config.json missing); `cargo xtask toy-model --world {}` makes it",
                self.model.display(),
                self.world
            )));
        }
        if self.seeds == 0 || self.jobs == 0 {
            return Err(Error::Usage(format!(
                "toy paper: seeds ({}) and jobs ({}) must be at least 1",
                self.seeds, self.jobs
            )));
        }
        let last = self.tina.steps;
        if self.tina.save_every == 0 {
            return Err(Error::Usage("toy paper: the toy Tina's save_every must be at least 1".into()));
        }
        if let Some(s) = self.source_steps.iter().find(|&&s| s >= last || (s > 0 && s % self.tina.save_every != 0)) {
            return Err(Error::Usage(format!(
                "toy paper: source step {s} is not a checkpoint of the toy Tina's {last} steps (saved every {})",
                self.tina.save_every
            )));
        }
        if !self.source_steps.contains(&0) {
            return Err(Error::Usage(
                "toy paper: source steps must include 0 (the base model as source: Resa-STILL-v4 and -v5)".into(),
            ));
        }
        Ok(())
    }
}

/// One evaluated model of one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyRow {
    /// The seed of the run it belongs to.
    pub seed: u64,
    /// A stable id: `base`, `rl-source`, `sae-tuning`, `cot-free-sft`, `cot-sft`,
    /// `sae-pretrained`, `sae-scratch`, `source-N` (fine-tuned SAE from the toy Tina at step
    /// N; 0 is the base itself, Resa-STILL-v4), `source-0-scratch` (Resa-STILL-v5),
    /// `sibling-adapter`, `layers.N`.
    pub id: String,
    /// "3", "4", "5" or "6".
    pub table: String,
    /// Row name.
    pub name: String,
    /// `base`, `rl-source`, `sae-tuning`, `cot-free-sft`, `cot-sft`, `adapter-transfer`, `layer`.
    pub role: String,
    /// Pass@1, percent.
    pub pass_at_1: f64,
    /// Its standard error, percent.
    pub stderr: f64,
    /// Problems.
    pub n_problems: usize,
    /// Samples per problem.
    pub n_samples: usize,
    /// Share of the completions that reason (a step inside `<think>`), percent.
    pub reasoned_pct: f64,
    /// The evaluation folder (its `completions.jsonl` pairs the comparisons).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The reasoning features of the toy Tina at one swept hookpoint, for one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureCount {
    /// Seed.
    pub seed: u64,
    /// Hookpoint.
    pub hookpoint: String,
    /// Reasoning features there.
    pub count: usize,
}

/// The hookpoint a layer mixture suggests, for one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MixtureSuggestion {
    /// Seed.
    pub seed: u64,
    /// `feature counts` or `per-layer Pass@1`.
    pub by: String,
    /// The suggested hookpoint, if any.
    pub hookpoint: Option<String>,
}

/// What the toy paper measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyPaperReport {
    /// The settings.
    pub config: ToyPaperConfig,
    /// Every evaluated model of every seed.
    pub rows: Vec<ToyRow>,
    /// Every claim of every seed.
    pub claims: Vec<Claim>,
    /// Each claim over the seeds.
    pub summary: Vec<ClaimSummary>,
    /// Table 6: the toy Tina's reasoning features per swept hookpoint and seed.
    pub feature_counts: Vec<FeatureCount>,
    /// The layer mixtures' suggested hookpoints (by feature counts; by per-layer scores).
    pub mixtures: Vec<MixtureSuggestion>,
    /// Seconds per part (`seed-N/part`, `sibling`, `total`).
    pub seconds: Vec<(String, f64)>,
}

/// Progress of the toy paper.
#[derive(Debug, Clone, Copy)]
pub enum ToyPaperEvent<'a> {
    /// A part begins.
    Begin(&'a str),
    /// A toy-Tina step.
    Rl(&'a resa_tune::StepMetrics),
    /// A step of the sibling model's full-parameter training.
    Sibling(&'a resa_tune::StepMetrics),
    /// Stage I / Stage II progress.
    Pipeline(PipelineEvent<'a>),
    /// Evaluation progress.
    Eval(&'a resa_eval::Progress<'a>),
}

/// Where progress goes: the seed (`None` for the parts every seed shares) and the event.
/// Seeds run on several threads at once, so it is called from several threads.
pub type OnEvent<'f> = &'f (dyn Fn(Option<u64>, ToyPaperEvent<'_>) + Sync);

/// What one seed measured.
struct SeedResult {
    rows: Vec<ToyRow>,
    claims: Vec<Claim>,
    feature_counts: Vec<FeatureCount>,
    mixtures: Vec<MixtureSuggestion>,
    seconds: Vec<(String, f64)>,
}

/// Runs the toy paper on backend `B`: the sibling model once, then every seed (`cfg.jobs`
/// at a time), then the report.
pub fn run_toy_paper<B: Backend>(
    cfg: &ToyPaperConfig,
    device: &B::Device,
    on_event: OnEvent<'_>,
) -> Result<ToyPaperReport> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let started = Instant::now();
    let sibling = cfg.out.join("sibling");
    if cfg.sibling_steps > 0 && !sibling.join("config.json").is_file() {
        on_event(None, ToyPaperEvent::Begin("sibling toy model (the base trained further on another seed's text)"));
        make_sibling::<B>(cfg, &sibling, device, on_event)?;
    }
    let mut seconds = vec![("sibling".to_string(), started.elapsed().as_secs_f64())];
    let mut results = Vec::with_capacity(cfg.seeds);
    for chunk in cfg.seed_list().chunks(cfg.jobs) {
        let done: Vec<Result<SeedResult>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&seed| scope.spawn(move || runs::run_seed::<B>(cfg, seed, device, on_event)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::Internal("a seed's run panicked".into()))))
                .collect()
        });
        for r in done {
            results.push(r?);
        }
    }
    let (mut rows, mut claims, mut feature_counts, mut mixtures) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in results {
        rows.extend(r.rows);
        claims.extend(r.claims);
        feature_counts.extend(r.feature_counts);
        mixtures.extend(r.mixtures);
        seconds.extend(r.seconds);
    }
    seconds.push(("total".to_string(), started.elapsed().as_secs_f64()));
    let summary = claims::summarize(&claims);
    let report = ToyPaperReport { config: cfg.clone(), rows, claims, summary, feature_counts, mixtures, seconds };
    report::write_report(&report)?;
    Ok(report)
}

/// The sibling of Table 5: the base model after `sibling_steps` full-parameter steps on the
/// training text of the same world with another seed (the same mixture the base was trained
/// on), written (with the tokenizer) into `dir`. Made once: like the base, it is a model of
/// the family, not part of what a seed varies.
fn make_sibling<B: Backend>(cfg: &ToyPaperConfig, dir: &Path, device: &B::Device, on_event: OnEvent<'_>) -> Result<()> {
    use resa_tune::full::{FullTrainConfig, train_full};
    let tokenizer = resa_qwen2::Tokenizer::from_dir(&cfg.model)?;
    let seed = 2000;
    let texts = crate::model::training_texts(&tokenizer, cfg.world, seed, 4000, cfg.world.direct_share())?;
    let chunks = crate::model::pack(&tokenizer, &texts, 128)?;
    let model = resa_qwen2::Qwen2ForCausalLM::<Autodiff<B>>::from_pretrained(&cfg.model, device, DType::F32)?;
    let train = FullTrainConfig {
        lr: 5e-4,
        schedule: resa_tune::LrSchedule::Constant,
        steps: cfg.sibling_steps,
        batch_size: 8,
        seed,
        ..FullTrainConfig::default()
    };
    let model = train_full(model, &chunks, &train, &mut |m| {
        on_event(None, ToyPaperEvent::Sibling(m));
        true
    })?;
    let tmp = resa_publish::temp_sibling(dir, "tmp")?;
    burn::module::AutodiffModule::valid(&model).save_pretrained(&tmp, resa_qwen2::safetensors_io::StoredDtype::F32)?;
    world::write_tokenizer(&tmp)?;
    resa_publish::replace_dir(&tmp, dir)?;
    Ok(())
}
