//! The paper's central claim in miniature (`resa reproduce toy-paper`): on the toy model, an
//! RL-trained source (a toy Tina, [`crate::tina`]) and the toy analogues of Tables 3, 4 and 6
//! — SAE-Tuning with the RL source's SAE into the untouched base, CoT-free and CoT-based
//! SFT, the SAE's training mode, the source's RL checkpoint, and the hookpoint layer with
//! the source's reasoning-feature counts and both layer mixtures. Every model is evaluated on
//! the same held-out problems with the same sampling seeds, so each of the paper's claims is
//! a paired comparison, reported as holding or not at toy scale — whatever it shows.
//!
//! Writes `report.md`, `report.json` (`rows`, `claims`: a stable shape), `figures/` and every
//! stage's artifacts under the output folder; a rerun reuses every finished stage.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::world::{self, World};
use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_data::Template;
use resa_qwen2::Hookpoint;
use serde::{Deserialize, Serialize};

use crate::demo::{ToyRun, ToyStages};
use crate::error::{Error, Result};
use crate::tina::{Paired, ToyEvalConfig, ToyTinaConfig, paired, train_toy_tina};
use resa_pipeline::evaluation::Evaluation;
use resa_pipeline::pipeline::{ModelRef, ObjectiveKind, Pipeline, PipelineEvent, PipelineFile, SaeMode};
use resa_pipeline::{run_pipeline, run_stage1};

/// Settings of the toy paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyPaperConfig {
    /// The toy world.
    #[serde(default)]
    pub world: World,
    /// The toy model (the base: Table 3's R1-Distill).
    pub model: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Seed of the data, the SAEs, the adapters and the samples.
    pub seed: u64,
    /// CoT-free rows (trigger = elicitation data, as in Resa-STILL-v1).
    pub train_rows: usize,
    /// The toy Tina (its `out` is set to `out/toy-tina`).
    pub tina: ToyTinaConfig,
    /// The toy Tina's checkpoints used as sources for Table 4 (0: the base model itself);
    /// the last step is the main row.
    pub source_steps: Vec<u64>,
    /// The evaluation (problems, samples, sampling).
    pub eval: ToyEvalConfig,
    /// Stage I and Stage II of every SAE-Tuning and SFT run (the demo's settings; the
    /// hookpoint is that of Tables 3–5).
    #[serde(flatten)]
    pub stages: ToyStages,
    /// Table 6: the layers swept (empty: no sweep).
    pub sweep_layers: Vec<usize>,
    /// Table 5: full-parameter steps that make the sibling model (the base trained further
    /// on another seed's CoT text); 0 leaves Table 5 out.
    pub sibling_steps: u64,
}

impl Default for ToyPaperConfig {
    fn default() -> Self {
        ToyPaperConfig {
            world: World::Arith,
            model: crate::model::default_dir(),
            out: PathBuf::from("runs/toy-paper"),
            seed: 0,
            train_rows: 2000,
            tina: ToyTinaConfig { steps: 100, save_every: 25, ..ToyTinaConfig::default() },
            source_steps: vec![0, 25, 50],
            eval: ToyEvalConfig::default(),
            stages: ToyStages::default(),
            sweep_layers: (0..6).collect(),
            sibling_steps: 200,
        }
    }
}

impl ToyPaperConfig {
    /// The reduced run (`--quick`, CI): every table, few steps, few problems.
    pub fn quick(self) -> Self {
        ToyPaperConfig {
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
}

/// One evaluated model of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyRow {
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
    /// The evaluation folder (its `completions.jsonl` pairs the comparisons).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// One of the paper's claims tested at toy scale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// The claim as the paper makes it.
    pub claim: String,
    /// Its toy analogue: which rows are compared and how.
    pub test: String,
    /// Whether it holds here.
    pub holds: bool,
    /// The paired difference (first row − second row), percentage points.
    pub diff: f64,
    /// Its standard error.
    pub stderr: f64,
}

/// What the toy paper measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToyPaperReport {
    /// The settings.
    pub config: ToyPaperConfig,
    /// Every evaluated model.
    pub rows: Vec<ToyRow>,
    /// The claims.
    pub claims: Vec<Claim>,
    /// Table 6: the source's reasoning features per swept hookpoint.
    pub feature_counts: Vec<(String, usize)>,
    /// The layer mixtures' suggested hookpoints (by feature counts; by per-layer scores).
    pub mixtures: Vec<(String, Option<String>)>,
    /// Seconds per part.
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

/// Runs the toy paper on backend `B`.
pub fn run_toy_paper<B: Backend>(
    cfg: &ToyPaperConfig,
    device: &B::Device,
    on_event: &mut dyn FnMut(ToyPaperEvent<'_>),
) -> Result<ToyPaperReport> {
    if !cfg.model.join("config.json").is_file() {
        return Err(Error::Usage(format!(
            "{}: no toy model there (config.json missing); `cargo xtask toy-model` makes it",
            cfg.model.display()
        )));
    }
    let last = cfg.tina.steps;
    if let Some(s) = cfg.source_steps.iter().find(|&&s| s >= last || (s > 0 && s % cfg.tina.save_every != 0)) {
        return Err(Error::Usage(format!(
            "toy paper: source step {s} is not a checkpoint of the toy Tina's {last} steps (saved every {})",
            cfg.tina.save_every
        )));
    }
    let out = &cfg.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut seconds = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut Vec<(String, f64)>| {
        seconds.push((name.to_string(), clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    // Data: the CoT-free rows (with their worked solutions, for the CoT-based SFT), and the
    // toy world of another seed rendered as CoT text for the "pretrained" SAE (generic text
    // on the base model, as the paper's pretrained SAEs are).
    on_event(ToyPaperEvent::Begin("data"));
    let data = out.join("data");
    cfg.world.generator(cfg.seed).write_splits(&data, [cfg.train_rows, 0, 0])?;
    cfg.world.generator(cfg.seed.wrapping_add(1000)).write_splits(out.join("generic"), [cfg.train_rows, 0, 0])?;
    let train = data.join("train.jsonl");
    let generic = out.join("generic/train.jsonl");

    // The toy Tina (checkpoints kept for Table 4's source ablation).
    on_event(ToyPaperEvent::Begin("toy Tina (LoRA-GRPO)"));
    let tina_cfg =
        ToyTinaConfig {
            model: cfg.model.clone(),
            out: out.join("toy-tina"),
            world: cfg.world,
            seed: cfg.seed,
            ..cfg.tina.clone()
        };
    let tina_adapter = tina_cfg.out.join("adapter");
    if !tina_adapter.join("adapter_config.json").is_file() {
        train_toy_tina::<B>(&tina_cfg, device, &mut |m| {
            on_event(ToyPaperEvent::Rl(m));
            true
        })?;
    }
    let source_at = |step: u64| -> ModelRef {
        let mut m = ModelRef::new(cfg.model.display().to_string());
        if step == last {
            m.adapter = Some(tina_adapter.display().to_string());
        } else if step > 0 {
            m.adapter = Some(tina_cfg.out.join(format!("checkpoint-{step}")).display().to_string());
        }
        m
    };
    let base = ModelRef::new(cfg.model.display().to_string());
    let tina = source_at(last);
    lap("toy-tina", &mut seconds);

    // The pretrained SAE: the base model on generic text.
    on_event(ToyPaperEvent::Begin("pretrained SAE (base model, generic toy text)"));
    let generic_run = Pipeline::new(
        run_file(
            cfg,
            "sae-generic",
            &base,
            &generic,
            Template::custom(world::TOY_COT_TEMPLATE)?,
            SaeMode::Scratch,
            None,
            cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        ),
        "the toy paper's pretrained SAE",
    )?;
    let (generic_saes, _) =
        run_stage1::<Autodiff<B>>(&generic_run, &[cfg.stages.hookpoint], &cfg.model, device, DType::F32, &mut |e| {
            on_event(ToyPaperEvent::Pipeline(e))
        })?;
    let generic_saes = generic_saes.display().to_string();
    lap("pretrained-sae", &mut seconds);

    // Table 5's sibling: the base model trained further (every weight) on another seed's CoT
    // text — the same architecture, a different data mix.
    let sibling = out.join("sibling");
    if cfg.sibling_steps > 0 && !sibling.join("config.json").is_file() {
        on_event(ToyPaperEvent::Begin("sibling toy model (the base trained further on another seed's CoT text)"));
        make_sibling::<B>(cfg, &sibling, device, on_event)?;
    }
    lap("sibling", &mut seconds);

    // The Stage II runs: (name, table, role, source, SAE mode, SAE path, objective, template).
    let cot_free = || Template::custom(world::TOY_TEMPLATE);
    let mut runs: Vec<(String, &str, &str, PipelineFile)> = Vec::new();
    let mut add = |name: &str, table: &'static str, role: &'static str, file: PipelineFile| {
        runs.push((name.to_string(), table, role, file));
    };
    let finetune = |step: u64, dir: &str| -> Result<PipelineFile> {
        Ok(run_file(
            cfg,
            dir,
            &source_at(step),
            &train,
            cot_free()?,
            SaeMode::Finetune,
            Some(generic_saes.clone()),
            cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        ))
    };
    add("SAE-Tuning (toy Tina's fine-tuned SAE)", "3", "sae-tuning", finetune(last, "sae-tuning")?);
    add(
        "CoT-free SFT",
        "3",
        "cot-free-sft",
        run_file(
            cfg,
            "cot-free-sft",
            &base,
            &train,
            cot_free()?,
            SaeMode::Pretrained,
            Some(generic_saes.clone()),
            cfg.stages.hookpoint,
            ObjectiveKind::Sft,
        ),
    );
    add(
        "CoT-based SFT",
        "3",
        "cot-sft",
        run_file(
            cfg,
            "cot-sft",
            &base,
            &train,
            Template::custom(world::TOY_COT_TEMPLATE)?,
            SaeMode::Pretrained,
            Some(generic_saes.clone()),
            cfg.stages.hookpoint,
            ObjectiveKind::Sft,
        ),
    );
    add(
        "SAE-Tuning, pretrained SAE (no Stage I)",
        "4",
        "sae-tuning",
        run_file(
            cfg,
            "sae-pretrained",
            &tina,
            &train,
            cot_free()?,
            SaeMode::Pretrained,
            Some(generic_saes.clone()),
            cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        ),
    );
    add(
        "SAE-Tuning, SAE trained from scratch on the toy Tina",
        "4",
        "sae-tuning",
        run_file(
            cfg,
            "sae-scratch",
            &tina,
            &train,
            cot_free()?,
            SaeMode::Scratch,
            None,
            cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        ),
    );
    for &step in &cfg.source_steps {
        add(
            &format!("SAE-Tuning, source: toy Tina at step {step}"),
            "4",
            "sae-tuning",
            finetune(step, &format!("sae-source-{step}"))?,
        );
    }
    if cfg.sibling_steps > 0 {
        // SAE-Tuning with the toy Tina's SAE, the adapter trained on the sibling; it is then
        // attached to the base without any training there.
        // The main row's SAE (trained first) is the one spliced in: no second Stage I.
        let mut file = run_file(
            cfg,
            "sae-sibling",
            &tina,
            &train,
            cot_free()?,
            SaeMode::Pretrained,
            Some(out.join("sae-tuning/stage1").display().to_string()),
            cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        );
        file.target = ModelRef::new(sibling.display().to_string());
        add("SAE-Tuning adapter trained on a sibling model, attached to the base", "5", "adapter-transfer", file);
    }

    // Table 6: one SAE per swept layer of the toy Tina from one activation pass, then one
    // Stage II per layer with its SAE.
    let mut sweep_saes = None;
    if !cfg.sweep_layers.is_empty() {
        on_event(ToyPaperEvent::Begin("layer sweep: Stage I on every swept layer of the toy Tina"));
        let hookpoints: Vec<Hookpoint> = cfg.sweep_layers.iter().map(|&l| Hookpoint::Residual(l)).collect();
        let sweep = Pipeline::new(
            run_file(
                cfg,
                "sweep",
                &tina,
                &train,
                cot_free()?,
                SaeMode::Scratch,
                None,
                hookpoints[0],
                ObjectiveKind::SaeTuning,
            ),
            "the toy paper's layer sweep",
        )?;
        let (dir, _) = run_stage1::<Autodiff<B>>(&sweep, &hookpoints, &cfg.model, device, DType::F32, &mut |e| {
            on_event(ToyPaperEvent::Pipeline(e))
        })?;
        for &h in &hookpoints {
            add(
                &format!("SAE-Tuning at {h}"),
                "6",
                "layer",
                run_file(
                    cfg,
                    &format!("sweep/{h}"),
                    &tina,
                    &train,
                    cot_free()?,
                    SaeMode::Pretrained,
                    Some(dir.display().to_string()),
                    h,
                    ObjectiveKind::SaeTuning,
                ),
            );
        }
        sweep_saes = Some((dir, hookpoints));
    }
    lap("stage1-sweep", &mut seconds);

    let mut adapters = Vec::new();
    for (name, table, role, file) in &runs {
        on_event(ToyPaperEvent::Begin(name));
        let pipeline = Pipeline::new(file.clone(), name)?;
        let report =
            run_pipeline::<Autodiff<B>>(&pipeline, device, DType::F32, &mut |e| on_event(ToyPaperEvent::Pipeline(e)))?;
        adapters.push((name.clone(), *table, *role, report.adapter));
    }
    lap("stage2", &mut seconds);

    // Evaluations: one loaded base model; the toy Tina and every adapter swapped in.
    let task = cfg.world.test_task(cfg.eval.problems_seed, cfg.eval.problems);
    let mut evaluation = Evaluation::<B>::new(&base, vec![task], cfg.eval.eval_config(), device, DType::F32)?;
    let mut rows = Vec::new();
    let eval_one = |evaluation: &Evaluation<B>,
                    table: &str,
                    name: &str,
                    role: &str,
                    dir: PathBuf,
                    on_event: &mut dyn FnMut(ToyPaperEvent<'_>)|
     -> Result<ToyRow> {
        on_event(ToyPaperEvent::Begin(&format!("eval: {name}")));
        let report = evaluation.run(&dir, name, |p| on_event(ToyPaperEvent::Eval(p)))?;
        let b = report.benches.first().ok_or_else(|| Error::Setup(format!("{name}: the evaluation scored nothing")))?;
        Ok(ToyRow {
            table: table.into(),
            name: name.into(),
            role: role.into(),
            pass_at_1: b.pass_at_1_pct,
            stderr: b.stderr_pct,
            n_problems: b.problems,
            n_samples: cfg.eval.samples,
            dir,
        })
    };
    let evals = out.join("eval");
    rows.push(eval_one(&evaluation, "3", "toy model (base)", "base", evals.join("base"), on_event)?);
    evaluation.with_adapter(&tina_adapter)?;
    rows.push(eval_one(
        &evaluation,
        "3",
        "toy Tina (LoRA-GRPO, the RL source)",
        "rl-source",
        evals.join("toy-tina"),
        on_event,
    )?);
    for (i, (name, table, role, adapter)) in adapters.iter().enumerate() {
        evaluation.with_adapter(adapter)?;
        rows.push(eval_one(&evaluation, table, name, role, evals.join(format!("run-{i:02}")), on_event)?);
    }
    lap("evaluation", &mut seconds);

    // Table 6's features: the toy Tina's reasoning features per swept layer, and the two
    // layer mixtures (by feature counts, by the per-layer Pass@1).
    let (mut feature_counts, mut mixtures) = (Vec::new(), Vec::new());
    if let Some((dir, hookpoints)) = &sweep_saes {
        on_event(ToyPaperEvent::Begin("reasoning features of the toy Tina per layer"));
        let dir_model = resa_qwen2::hub::resolve_model(&tina.model)?;
        let model = tina.load::<B>(&dir_model, device, DType::F32)?;
        let tokenizer = resa_qwen2::Tokenizer::from_dir(&dir_model)?;
        let layers = model.config().num_hidden_layers;
        let saes = resa_pipeline::features::load_saes::<B>(dir, layers, device)?;
        let scores: std::collections::BTreeMap<String, f64> = hookpoints
            .iter()
            .filter_map(|h| {
                rows.iter().find(|r| r.name == format!("SAE-Tuning at {h}")).map(|r| (h.to_string(), r.pass_at_1))
            })
            .collect();
        let scores_path = out.join("features/scores.json");
        std::fs::create_dir_all(out.join("features")).map_err(|e| Error::io(out.join("features"), e))?;
        resa_publish::write_atomic(
            &scores_path,
            serde_json::to_string_pretty(&scores).map_err(|e| Error::json("the sweep scores", e))?.as_bytes(),
        )?;
        let opts = resa_pipeline::features::FeatureOptions { scores: Some(scores_path), ..Default::default() };
        let analysis =
            resa_pipeline::features::reasoning_features(&model, &tokenizer, &saes, &opts, &out.join("features"))?;
        feature_counts = analysis.layers.iter().map(|l| (l.hookpoint.to_string(), l.count)).collect();
        mixtures
            .push(("feature counts".to_string(), analysis.counts.proposals.first().map(|p| p.hookpoint.to_string())));
        if let Some(m) = &analysis.score_mixture {
            mixtures.push(("per-layer Pass@1".to_string(), m.proposals.first().map(|p| p.hookpoint.to_string())));
        }
    }
    lap("features", &mut seconds);

    let claims = claims(&rows)?;
    let config = ToyPaperConfig { tina: tina_cfg.clone(), ..cfg.clone() };
    let report = ToyPaperReport { config, rows, claims, feature_counts, mixtures, seconds };
    write_report(&report)?;
    Ok(report)
}

/// The sibling of Table 5: the base model after `sibling_steps` full-parameter steps on the
/// CoT text of the toy world of another seed, written (with the tokenizer) into `dir`.
fn make_sibling<B: Backend>(
    cfg: &ToyPaperConfig,
    dir: &Path,
    device: &B::Device,
    on_event: &mut dyn FnMut(ToyPaperEvent<'_>),
) -> Result<()> {
    use resa_tune::full::{FullTrainConfig, train_full};
    let tokenizer = resa_qwen2::Tokenizer::from_dir(&cfg.model)?;
    let seed = cfg.seed.wrapping_add(2000);
    let texts = crate::model::training_texts(&tokenizer, cfg.world, seed, 4000, cfg.world.direct_share())?;
    let chunks = crate::model::pack(&tokenizer, &texts, 128)?;
    let model = resa_qwen2::Qwen2ForCausalLM::<Autodiff<B>>::from_pretrained(&cfg.model, device, DType::F32)?;
    let train = FullTrainConfig {
        lr: 5e-4,
        schedule: resa_tune::LrSchedule::Constant,
        steps: cfg.sibling_steps,
        batch_size: 8,
        seed: cfg.seed.wrapping_add(2000),
        ..FullTrainConfig::default()
    };
    let model = train_full(model, &chunks, &train, &mut |m| {
        on_event(ToyPaperEvent::Sibling(m));
        true
    })?;
    let tmp = resa_publish::temp_sibling(dir, "tmp")?;
    burn::module::AutodiffModule::valid(&model).save_pretrained(&tmp, resa_qwen2::safetensors_io::StoredDtype::F32)?;
    world::write_tokenizer(&tmp)?;
    resa_publish::replace_dir(&tmp, dir)?;
    Ok(())
}

/// One pipeline of the toy paper into `out/<dir>` (target: the base model).
#[allow(clippy::too_many_arguments)]
fn run_file(
    cfg: &ToyPaperConfig,
    dir: &str,
    source: &ModelRef,
    data: &Path,
    template: Template,
    mode: SaeMode,
    sae_path: Option<String>,
    hookpoint: Hookpoint,
    objective: ObjectiveKind,
) -> PipelineFile {
    cfg.stages.pipeline_file(ToyRun {
        out: cfg.out.join(dir),
        seed: cfg.seed,
        source: source.clone(),
        target: ModelRef::new(cfg.model.display().to_string()),
        data,
        template,
        sae: (mode, sae_path),
        hookpoint,
        objective,
    })
}

/// The paper's claims as paired comparisons of the rows.
fn claims(rows: &[ToyRow]) -> Result<Vec<Claim>> {
    let find = |name_part: &str| rows.iter().find(|r| r.name.contains(name_part));
    let pair = |a: &ToyRow, b: &ToyRow| -> Result<Paired> {
        paired(&b.dir.join("completions.jsonl"), &a.dir.join("completions.jsonl"))
    };
    let mut out = Vec::new();
    // "above": a − b > 2 s.e.; "matches": |a − b| ≤ 2 s.e.
    let mut claim = |claim: &str, a: Option<&ToyRow>, b: Option<&ToyRow>, matches: bool| -> Result<()> {
        let (Some(a), Some(b)) = (a, b) else { return Ok(()) };
        let p = pair(a, b)?;
        let holds = if matches { p.diff_pct.abs() <= 2.0 * p.stderr_pct } else { p.above(2.0) };
        let test = format!(
            "{} {} {} (paired over {} problems, {})",
            a.name,
            if matches { "≈" } else { ">" },
            b.name,
            p.problems,
            if matches { "|difference| ≤ 2 s.e." } else { "difference > 2 s.e." }
        );
        out.push(Claim { claim: claim.into(), test, holds, diff: p.diff_pct, stderr: p.stderr_pct });
        Ok(())
    };
    let base = find("(base)");
    let tina = find("RL source");
    let sae = find("toy Tina's fine-tuned SAE");
    claim("RL on CoT-free data (Tina) improves on the base model", tina, base, false)?;
    claim("SAE-Tuning with the RL source's SAE improves on the base model", sae, base, false)?;
    claim("SAE-Tuning recovers the RL source's performance (Resa-STILL-v1 ≈ Tina-STILL)", sae, tina, true)?;
    claim("SAE-Tuning beats CoT-free SFT on the same data", sae, find("CoT-free SFT"), false)?;
    claim("SAE-Tuning beats CoT-based SFT", sae, find("CoT-based SFT"), false)?;
    claim("A fine-tuned SAE beats a pretrained one (Resa-STILL-v1 > v2)", sae, find("pretrained SAE"), false)?;
    claim(
        "An SAE trained from scratch does about as well as a fine-tuned one (v3 ≈ v1)",
        find("from scratch"),
        sae,
        true,
    )?;
    let first_source = rows.iter().find(|r| r.name.contains("source: toy Tina at step 0"));
    claim(
        "The RL-trained source beats the untrained one as the SAE's source (Tina-2000-step > Tina-0-step)",
        sae,
        first_source,
        false,
    )?;
    claim(
        "An SAE-Tuning adapter works on another model of the family without training there (reasoning as an adapter)",
        find("sibling model"),
        base,
        false,
    )?;
    for r in rows.iter().filter(|r| r.role == "layer") {
        claim(&format!("SAE-Tuning improves on the base at every layer ({})", r.name), Some(r), base, false)?;
    }
    Ok(out)
}

/// Markdown and JSON of the report, and the figure.
fn write_report(report: &ToyPaperReport) -> Result<()> {
    let out = &report.config.out;
    let c = &report.config;
    let mut md = String::from("# The toy paper: Resa's claims on the toy model\n\n");
    md.push_str(&format!(
        "Pass@1 (%) ± standard error on {} held-out toy problems × {} samples (temperature 0.6, top-p 0.95, the \
         same seeds for every model). The RL source is a toy Tina: {} LoRA-GRPO steps of {} prompts × {} \
         completions. SAE-Tuning: SAE at {} ({} latents, k {}), {} Stage II steps on CoT-free toy data.\n\n",
        c.eval.problems,
        c.eval.samples,
        c.tina.steps,
        c.tina.prompts_per_step,
        c.tina.group_size,
        c.stages.hookpoint,
        c.stages.num_latents,
        c.stages.k,
        c.stages.stage2_steps
    ));
    for (table, title) in [
        ("3", "Table 3: the RL source and SAE-Tuning"),
        ("4", "Table 4: SAE mode and source checkpoint"),
        ("5", "Table 5: reasoning as an adapter"),
        ("6", "Table 6: hookpoint layer"),
    ] {
        let rows: Vec<&ToyRow> = report.rows.iter().filter(|r| r.table == table).collect();
        if rows.is_empty() {
            continue;
        }
        md.push_str(&format!("## {title}\n\n| Model | Pass@1 (%) |"));
        let features = table == "6";
        md.push_str(if features { " reasoning features |\n|---|---:|---:|\n" } else { "\n|---|---:|\n" });
        for r in rows {
            md.push_str(&format!("| {} | {:.2} ± {:.2} |", r.name, r.pass_at_1, r.stderr));
            if features {
                let h = r.name.trim_start_matches("SAE-Tuning at ");
                let n = report
                    .feature_counts
                    .iter()
                    .find(|(k, _)| k == h)
                    .map_or("—".to_string(), |(_, n)| n.to_string());
                md.push_str(&format!(" {n} |"));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    for (by, suggestion) in &report.mixtures {
        md.push_str(&format!("Layer mixture by {by}: suggests {}.\n", suggestion.as_deref().unwrap_or("no hookpoint")));
    }
    md.push_str("\n## The paper's claims at toy scale\n\n| Claim | Toy test | Paired difference | Holds |\n|---|---|---:|---|\n");
    for cl in &report.claims {
        md.push_str(&format!(
            "| {} | {} | {:+.2} ± {:.2} | {} |\n",
            cl.claim,
            cl.test,
            cl.diff,
            cl.stderr,
            if cl.holds { "holds" } else { "does not hold" }
        ));
    }
    md.push_str("\nTimes: ");
    md.push_str(&report.seconds.iter().map(|(n, s)| format!("{n} {s:.0} s")).collect::<Vec<_>>().join(", "));
    md.push('\n');
    md.push_str(&figures(report));
    resa_publish::write_atomic(out.join("report.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::json("the toy paper report", e))?;
    resa_publish::write_atomic(out.join("report.json"), json.as_bytes())?;
    Ok(())
}

/// The figures (plotters, the `plot` feature, when a font is found): Pass@1 with error bars
/// per table, Pass@1 against the source's RL step; the layer mixtures are drawn by the
/// feature analysis (`features/figures/`). Returns the Markdown that shows them.
#[cfg(feature = "plot")]
fn figures(report: &ToyPaperReport) -> String {
    let mut md = String::new();
    if resa_features::plot::font_available().is_none() {
        return "\n(No figures: no TrueType font found; set RESA_FONT.)\n".into();
    }
    let dir = report.config.out.join("figures");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!("figures not drawn: {e}");
        return md;
    }
    md.push_str("\n## Figures\n\n");
    for table in ["3", "4", "5", "6"] {
        let rows: Vec<&ToyRow> =
            report.rows.iter().filter(|r| r.table == table || (table != "3" && r.role == "base")).collect();
        if rows.iter().all(|r| r.role == "base") {
            continue;
        }
        let labels: Vec<String> = rows.iter().map(|r| short_name(&r.name)).collect();
        let values: Vec<f64> = rows.iter().map(|r| r.pass_at_1).collect();
        let errors: Vec<f64> = rows.iter().map(|r| r.stderr).collect();
        let stem = dir.join(format!("table{table}"));
        match resa_features::plot::bars_figure(&labels, &values, &errors, &format!("Table {table} at toy scale"), &stem)
        {
            Ok(_) => md.push_str(&format!("![Table {table}](figures/table{table}.svg)\n\n")),
            Err(e) => tracing::warn!("figure not drawn: {e}"),
        }
    }
    let mut curve: Vec<(u64, f64)> = report
        .rows
        .iter()
        .filter_map(|r| {
            let step = r.name.strip_prefix("SAE-Tuning, source: toy Tina at step ")?.parse().ok()?;
            Some((step, r.pass_at_1))
        })
        .collect();
    if let Some(main) = report.rows.iter().find(|r| r.name.contains("toy Tina's fine-tuned SAE")) {
        curve.push((report.config.tina.steps, main.pass_at_1));
    }
    curve.sort_unstable_by_key(|p| p.0);
    if curve.len() > 1 {
        let stem = dir.join("source-steps");
        match resa_features::plot::steps_figure(
            &curve,
            None,
            "SAE-Tuning (fine-tuned SAE) by the source's LoRA-GRPO step",
            "the toy Tina's RL step (0: the base model as source)",
            &stem,
        ) {
            Ok(_) => md.push_str("![Pass@1 against the source's RL step](figures/source-steps.svg)\n\n"),
            Err(e) => tracing::warn!("figure not drawn: {e}"),
        }
    }
    if !report.feature_counts.is_empty() {
        md.push_str("The layer mixtures (by feature counts and by Pass@1): `features/figures/`.\n");
    }
    md
}

/// A row's name short enough for a bar label.
#[cfg(feature = "plot")]
fn short_name(name: &str) -> String {
    if let Some(step) = name.strip_prefix("SAE-Tuning, source: toy Tina at step ") {
        return format!("source step {step}");
    }
    if let Some(h) = name.strip_prefix("SAE-Tuning at ") {
        return h.to_string();
    }
    for (part, short) in [
        ("(base)", "base"),
        ("RL source", "toy Tina"),
        ("fine-tuned SAE", "SAE-Tuning"),
        ("CoT-free SFT", "CoT-free SFT"),
        ("CoT-based SFT", "CoT SFT"),
        ("pretrained SAE", "pretrained SAE"),
        ("from scratch", "scratch SAE"),
        ("sibling", "sibling's adapter"),
    ] {
        if name.contains(part) {
            return short.to_string();
        }
    }
    name.chars().take(16).collect()
}

#[cfg(not(feature = "plot"))]
fn figures(_report: &ToyPaperReport) -> String {
    "\n(No figures: built without the `plot` feature.)\n".into()
}
