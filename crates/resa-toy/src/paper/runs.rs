//! One seed of the toy paper: its data, its toy Tina, its SAEs and adapters, their
//! evaluations, the toy Tina's reasoning features and the seed's claims.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_data::Template;
use resa_pipeline::evaluation::Evaluation;
use resa_pipeline::pipeline::{ModelRef, ObjectiveKind, Pipeline, PipelineFile, SaeMode};
use resa_pipeline::{run_pipeline, run_stage1};
use resa_qwen2::Hookpoint;

use super::{FeatureCount, MixtureSuggestion, OnEvent, SeedResult, ToyPaperConfig, ToyPaperEvent, ToyRow};
use crate::compare::ToyEvalConfig;
use crate::demo::ToyRun;
use crate::error::{Error, Result};
use crate::tina::{ToyTinaConfig, train_toy_tina};
use crate::world;

/// One Stage II run of a seed and the row it becomes.
struct PaperRun {
    id: String,
    table: &'static str,
    role: &'static str,
    name: String,
    file: PipelineFile,
}

/// What every run of one seed shares.
struct SeedCtx<'a> {
    cfg: &'a ToyPaperConfig,
    seed: u64,
    dir: PathBuf,
    /// The CoT-free rows (with their worked solutions, for the CoT-based SFT).
    train: PathBuf,
    tina: ToyTinaConfig,
}

impl SeedCtx<'_> {
    fn base(&self) -> ModelRef {
        ModelRef::new(self.cfg.model.display().to_string())
    }

    /// The toy Tina at `step` (0: the base model; its last step: the finished adapter).
    fn source_at(&self, step: u64) -> ModelRef {
        let mut m = self.base();
        if step == self.tina.steps {
            m.adapter = Some(self.tina.out.join("adapter").display().to_string());
        } else if step > 0 {
            m.adapter = Some(self.tina.out.join(format!("checkpoint-{step}")).display().to_string());
        }
        m
    }

    /// One pipeline of this seed into `seed-N/<dir>` (target: the base model).
    fn file(
        &self,
        dir: &str,
        source: ModelRef,
        template: Template,
        sae: (SaeMode, Option<String>),
        hookpoint: Hookpoint,
        objective: ObjectiveKind,
    ) -> PipelineFile {
        self.cfg.stages.pipeline_file(ToyRun {
            out: self.dir.join(dir),
            seed: self.seed,
            source,
            target: self.base(),
            data: &self.train,
            template,
            sae,
            hookpoint,
            objective,
        })
    }

    /// SAE-Tuning from `source` with the CoT-free template at the main hookpoint.
    fn sae_tuning(&self, dir: &str, source: ModelRef, sae: (SaeMode, Option<String>)) -> Result<PipelineFile> {
        Ok(self.file(
            dir,
            source,
            Template::custom(world::TOY_TEMPLATE)?,
            sae,
            self.cfg.stages.hookpoint,
            ObjectiveKind::SaeTuning,
        ))
    }
}

/// Runs one seed into `seed-N/`.
pub(super) fn run_seed<B: Backend>(
    cfg: &ToyPaperConfig,
    seed: u64,
    device: &B::Device,
    on_event: OnEvent<'_>,
) -> Result<SeedResult> {
    let ev = |e: ToyPaperEvent<'_>| on_event(Some(seed), e);
    let dir = cfg.seed_dir(seed);
    let mut seconds = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut Vec<(String, f64)>| {
        seconds.push((format!("seed-{seed}/{name}"), clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    // Data: this seed's CoT-free rows, and the world with another seed rendered as CoT text
    // for the "pretrained" SAE (generic text on the base model, as the paper's are).
    ev(ToyPaperEvent::Begin("data"));
    cfg.world.generator(seed).write_splits(dir.join("data"), [cfg.train_rows, 0, 0])?;
    cfg.world.generator(seed.wrapping_add(1000)).write_splits(dir.join("generic"), [cfg.train_rows, 0, 0])?;
    let tina = ToyTinaConfig {
        model: cfg.model.clone(),
        out: dir.join("toy-tina"),
        world: cfg.world,
        seed,
        ..cfg.tina.clone()
    };
    let ctx = SeedCtx { cfg, seed, train: dir.join("data/train.jsonl"), dir: dir.clone(), tina };

    // The toy Tina (checkpoints kept for Table 4's source ablation).
    ev(ToyPaperEvent::Begin("toy Tina (LoRA-GRPO)"));
    if !ctx.tina.out.join("adapter/adapter_config.json").is_file() {
        train_toy_tina::<B>(&ctx.tina, device, &mut |m| {
            ev(ToyPaperEvent::Rl(m));
            true
        })?;
    }
    lap("toy-tina", &mut seconds);

    // The pretrained SAE: the base model on generic text.
    ev(ToyPaperEvent::Begin("pretrained SAE (base model, generic toy text)"));
    let mut generic = ctx.file(
        "sae-generic",
        ctx.base(),
        Template::custom(world::TOY_COT_TEMPLATE)?,
        (SaeMode::Scratch, None),
        cfg.stages.hookpoint,
        ObjectiveKind::SaeTuning,
    );
    generic.data.trigger = dir.join("generic/train.jsonl").display().to_string();
    generic.data.elicitation = generic.data.trigger.clone();
    let generic = Pipeline::new(generic, "the toy paper's pretrained SAE")?;
    let (generic_saes, _) =
        run_stage1::<Autodiff<B>>(&generic, &[cfg.stages.hookpoint], &cfg.model, device, DType::F32, &mut |e| {
            ev(ToyPaperEvent::Pipeline(e))
        })?;
    let generic_saes = generic_saes.display().to_string();
    lap("pretrained-sae", &mut seconds);

    let mut runs = table_runs(&ctx, &generic_saes)?;
    let sweep = sweep_runs::<B>(&ctx, device, &ev, &mut runs)?;
    lap("stage1-sweep", &mut seconds);

    let mut adapters = Vec::with_capacity(runs.len());
    for run in &runs {
        ev(ToyPaperEvent::Begin(&run.name));
        let pipeline = Pipeline::new(run.file.clone(), &run.name)?;
        let report =
            run_pipeline::<Autodiff<B>>(&pipeline, device, DType::F32, &mut |e| ev(ToyPaperEvent::Pipeline(e)))?;
        adapters.push(report.adapter);
    }
    lap("stage2", &mut seconds);

    let rows = evaluate::<B>(&ctx, &runs, &adapters, device, &ev)?;
    lap("evaluation", &mut seconds);

    let (feature_counts, mixtures) = match &sweep {
        Some((saes, hookpoints)) => features::<B>(&ctx, saes, hookpoints, &rows, device, &ev)?,
        None => (Vec::new(), Vec::new()),
    };
    lap("features", &mut seconds);

    let claims = super::claims::seed_claims(&rows, seed)?;
    super::report::seed_figures(&dir, &rows, cfg.tina.steps);
    Ok(SeedResult { rows, claims, feature_counts, mixtures, seconds })
}

/// The Stage II runs of Tables 3, 4 and 5 (the main row first: the sibling's run reuses its
/// SAE).
fn table_runs(ctx: &SeedCtx<'_>, generic_saes: &str) -> Result<Vec<PaperRun>> {
    let cfg = ctx.cfg;
    let last = ctx.tina.steps;
    let pretrained = || (SaeMode::Pretrained, Some(generic_saes.to_string()));
    let finetuned = || (SaeMode::Finetune, Some(generic_saes.to_string()));
    let sft = |dir: &str, template: &str| -> Result<PipelineFile> {
        Ok(ctx.file(
            dir,
            ctx.base(),
            Template::custom(template)?,
            pretrained(),
            cfg.stages.hookpoint,
            ObjectiveKind::Sft,
        ))
    };
    let run = |id: &str, table, role, name: &str, file| PaperRun {
        id: id.to_string(),
        table,
        role,
        name: name.to_string(),
        file,
    };
    let mut runs = vec![
        run(
            "sae-tuning",
            "3",
            "sae-tuning",
            "SAE-Tuning (toy Tina's fine-tuned SAE)",
            ctx.sae_tuning("sae-tuning", ctx.source_at(last), finetuned())?,
        ),
        run("cot-free-sft", "3", "cot-free-sft", "CoT-free SFT", sft("cot-free-sft", world::TOY_TEMPLATE)?),
        run("cot-sft", "3", "cot-sft", "CoT-based SFT", sft("cot-sft", world::TOY_COT_TEMPLATE)?),
        run(
            "sae-pretrained",
            "4",
            "sae-tuning",
            "SAE-Tuning, pretrained SAE (no Stage I)",
            ctx.sae_tuning("sae-pretrained", ctx.source_at(last), pretrained())?,
        ),
        run(
            "sae-scratch",
            "4",
            "sae-tuning",
            "SAE-Tuning, SAE trained from scratch on the toy Tina",
            ctx.sae_tuning("sae-scratch", ctx.source_at(last), (SaeMode::Scratch, None))?,
        ),
    ];
    for &step in &cfg.source_steps {
        let name = if step == 0 {
            "SAE-Tuning, source: the base itself, fine-tuned SAE (Resa-STILL-v4)".to_string()
        } else {
            format!("SAE-Tuning, source: toy Tina at step {step}")
        };
        let id = format!("source-{step}");
        runs.push(run(
            &id,
            "4",
            "sae-tuning",
            &name,
            ctx.sae_tuning(&format!("sae-{id}"), ctx.source_at(step), finetuned())?,
        ));
    }
    runs.push(run(
        "source-0-scratch",
        "4",
        "sae-tuning",
        "SAE-Tuning, source: the base itself, SAE from scratch (Resa-STILL-v5)",
        ctx.sae_tuning("sae-source-0-scratch", ctx.base(), (SaeMode::Scratch, None))?,
    ));
    if cfg.sibling_steps > 0 {
        // The toy Tina's SAE of the main row, the adapter trained on the sibling; it is then
        // attached to the base without any training there.
        let sae = (SaeMode::Pretrained, Some(ctx.dir.join("sae-tuning/stage1").display().to_string()));
        let mut file = ctx.sae_tuning("sae-sibling", ctx.source_at(last), sae)?;
        file.target = ModelRef::new(cfg.out.join("sibling").display().to_string());
        runs.push(run(
            "sibling-adapter",
            "5",
            "adapter-transfer",
            "SAE-Tuning adapter trained on a sibling model, attached to the base",
            file,
        ));
    }
    Ok(runs)
}

/// Table 6: one SAE per swept layer of the toy Tina from one activation pass, then one
/// Stage II run per layer with its SAE (appended to `runs`). Returns the SAEs' folder and
/// hookpoints.
fn sweep_runs<B: Backend>(
    ctx: &SeedCtx<'_>,
    device: &B::Device,
    ev: &dyn Fn(ToyPaperEvent<'_>),
    runs: &mut Vec<PaperRun>,
) -> Result<Option<(PathBuf, Vec<Hookpoint>)>> {
    let cfg = ctx.cfg;
    if cfg.sweep_layers.is_empty() {
        return Ok(None);
    }
    ev(ToyPaperEvent::Begin("layer sweep: Stage I on every swept layer of the toy Tina"));
    let last = ctx.tina.steps;
    let hookpoints: Vec<Hookpoint> = cfg.sweep_layers.iter().map(|&l| Hookpoint::Residual(l)).collect();
    let sweep = Pipeline::new(
        ctx.sae_tuning("sweep", ctx.source_at(last), (SaeMode::Scratch, None))?,
        "the toy paper's layer sweep",
    )?;
    let (dir, _) = run_stage1::<Autodiff<B>>(&sweep, &hookpoints, &cfg.model, device, DType::F32, &mut |e| {
        ev(ToyPaperEvent::Pipeline(e))
    })?;
    for &h in &hookpoints {
        let sae = (SaeMode::Pretrained, Some(dir.display().to_string()));
        let file = ctx.file(
            &format!("sweep/{h}"),
            ctx.source_at(last),
            Template::custom(world::TOY_TEMPLATE)?,
            sae,
            h,
            ObjectiveKind::SaeTuning,
        );
        runs.push(PaperRun { id: h.to_string(), table: "6", role: "layer", name: format!("SAE-Tuning at {h}"), file });
    }
    Ok(Some((dir, hookpoints)))
}

/// Evaluates the base, the toy Tina and every run's adapter on one loaded base model (the
/// adapters swapped in), the same problems and this seed's sampling seeds.
fn evaluate<B: Backend>(
    ctx: &SeedCtx<'_>,
    runs: &[PaperRun],
    adapters: &[PathBuf],
    device: &B::Device,
    ev: &dyn Fn(ToyPaperEvent<'_>),
) -> Result<Vec<ToyRow>> {
    let cfg = ctx.cfg;
    let eval = ToyEvalConfig { seed: ctx.seed, ..cfg.eval.clone() };
    let task = cfg.world.test_task(eval.problems_seed, eval.problems);
    let mut evaluation = Evaluation::<B>::new(&ctx.base(), vec![task], eval.eval_config(), device, DType::F32)?;
    let evals = ctx.dir.join("eval");
    let mut rows = Vec::with_capacity(runs.len() + 2);
    let mut one = |evaluation: &Evaluation<B>, id: &str, table: &str, role: &str, name: &str| -> Result<()> {
        ev(ToyPaperEvent::Begin(&format!("eval: {name}")));
        let dir = evals.join(id);
        let report = evaluation.run(&dir, name, |p| ev(ToyPaperEvent::Eval(p)))?;
        let b = report
            .benches
            .first()
            .ok_or_else(|| Error::Internal(format!("{name}: the evaluation scored no benchmark")))?;
        let profile = world::reasoning_profile(&resa_eval::read_completions(&dir.join("completions.jsonl"))?);
        rows.push(ToyRow {
            seed: ctx.seed,
            id: id.into(),
            table: table.into(),
            name: name.into(),
            role: role.into(),
            pass_at_1: b.pass_at_1_pct,
            stderr: b.stderr_pct,
            n_problems: b.problems,
            n_samples: eval.samples,
            reasoned_pct: profile.reasoned_pct,
            dir,
        });
        Ok(())
    };
    one(&evaluation, "base", "3", "base", "toy model (base)")?;
    evaluation.with_adapter(&ctx.tina.out.join("adapter"))?;
    one(&evaluation, "rl-source", "3", "rl-source", "toy Tina (LoRA-GRPO, the RL source)")?;
    for (run, adapter) in runs.iter().zip(adapters) {
        evaluation.with_adapter(adapter)?;
        one(&evaluation, &run.id, run.table, run.role, &run.name)?;
    }
    Ok(rows)
}

/// Table 6's features: the toy Tina's reasoning features per swept layer on the world's
/// feature prompt, and the two layer mixtures (by feature counts, by the per-layer Pass@1).
fn features<B: Backend>(
    ctx: &SeedCtx<'_>,
    saes: &Path,
    hookpoints: &[Hookpoint],
    rows: &[ToyRow],
    device: &B::Device,
    ev: &dyn Fn(ToyPaperEvent<'_>),
) -> Result<(Vec<FeatureCount>, Vec<MixtureSuggestion>)> {
    ev(ToyPaperEvent::Begin("reasoning features of the toy Tina per layer"));
    let tina = ctx.source_at(ctx.tina.steps);
    let model_dir = resa_qwen2::hub::resolve_model(&tina.model)?;
    let model = tina.load::<B>(&model_dir, device, DType::F32)?;
    let tokenizer = resa_qwen2::Tokenizer::from_dir(&model_dir)?;
    let saes = resa_pipeline::features::load_saes::<B>(saes, model.config().num_hidden_layers, device)?;
    let scores: std::collections::BTreeMap<String, f64> = hookpoints
        .iter()
        .filter_map(|h| rows.iter().find(|r| r.id == h.to_string()).map(|r| (h.to_string(), r.pass_at_1)))
        .collect();
    let out = ctx.dir.join("features");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let scores_path = out.join("scores.json");
    resa_publish::write_atomic(
        &scores_path,
        serde_json::to_string_pretty(&scores).map_err(|e| Error::json("the sweep scores", e))?.as_bytes(),
    )?;
    let opts = resa_pipeline::features::FeatureOptions {
        prompt: Some(ctx.cfg.world.feature_prompt()),
        scores: Some(scores_path),
        dashboard: Some(resa_pipeline::features::Dashboard {
            dataset: ctx.train.display().to_string(),
            rows: 200,
            top: 5,
        }),
        html: true,
        ..Default::default()
    };
    let analysis = resa_pipeline::features::reasoning_features(&model, &tokenizer, &saes, &opts, &out)?;
    let seed = ctx.seed;
    let counts = analysis
        .layers
        .iter()
        .map(|l| FeatureCount { seed, hookpoint: l.hookpoint.to_string(), count: l.count })
        .collect();
    let mut mixtures = vec![MixtureSuggestion {
        seed,
        by: "feature counts".into(),
        hookpoint: analysis.counts.proposals.first().map(|p| p.hookpoint.to_string()),
    }];
    if let Some(m) = &analysis.score_mixture {
        mixtures.push(MixtureSuggestion {
            seed,
            by: "per-layer Pass@1".into(),
            hookpoint: m.proposals.first().map(|p| p.hookpoint.to_string()),
        });
    }
    Ok((counts, mixtures))
}
