//! `resa demo`: the paper's pipeline in miniature, offline, on the CPU in minutes — the
//! shape of its Table 3 on the toy world.
//!
//! 1. Data: CoT-free toy problems (`Q: … A: <think> 32 </think> <answer> 32 </answer>`).
//! 2. Stage I: a TopK SAE from scratch on the toy model's `layers.3` activations over them.
//! 3. Stage II: SAE-guided SFT — LoRA on the toy model, trained so that the model with the
//!    SAE spliced in matches the unmodified model (KL).
//! 4. The CoT-free SFT baseline: LoRA with cross-entropy on the same data.
//! 5. Evaluation of base, CoT-free SFT and SAE-tuned on the toy test split with the paper's
//!    sampling settings; a table, `report.md`, `report.json` and `figures/pass_at_1.svg`.
//! 6. Reasoning features: small SAEs on every layer (one activation pass feeds all), the
//!    latents active only at `<think>` and `</think>` of the R1 system prompt, their Gaussian
//!    mixture over layers and the suggested hookpoint (`features/`).
//!
//! Every stage writes its usual artifacts (sparsify SAE folder, PEFT adapters, merged
//! model, evaluation folders), and a rerun skips stages whose output is up to date.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::world::{self, ToyWorld};
use burn::backend::Autodiff;
use burn::tensor::{DType, backend::Backend};
use resa_data::Template;
use resa_eval::{EvalConfig, Report, compare_markdown};
use resa_pipeline::pipeline::{
    DataSection, LoraSection, ModelRef, ObjectiveKind, PipelineFile, SaeMode, SaeSection, Stage2Section,
};
use resa_pipeline::pipeline::{Pipeline, PipelineEvent};
use resa_pipeline::{PipelineReport, run_pipeline};
use resa_qwen2::{Hookpoint, Qwen2ForCausalLM, Sampling, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use resa_pipeline::evaluation::Evaluation;
use resa_pipeline::stage::{SaeTraining, run_stage};

/// Settings of the demo (the defaults take a few minutes on two cores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    /// The toy model folder (default: the committed `models/toy-qwen2`).
    pub model: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// CoT-free training rows (trigger = elicitation data).
    pub train_rows: usize,
    /// Test problems evaluated per model.
    pub test_problems: usize,
    /// Stage I and Stage II (in the file form: the same keys as when they were fields here).
    #[serde(flatten)]
    pub stages: ToyStages,
    /// Evaluation token budget per completion.
    pub max_new_tokens: usize,
    /// Evaluation sampling (the paper's: temperature 0.6, top-p 0.95).
    pub sampling: Sampling,
    /// Seed of data, SAE, adapters and samples.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            model: crate::model::default_dir(),
            out: PathBuf::from("resa-demo"),
            train_rows: 2000,
            test_problems: 200,
            stages: ToyStages::default(),
            max_new_tokens: 96,
            sampling: Sampling::Sample { temperature: 0.6, top_p: 0.95, top_k: None },
            seed: 0,
        }
    }
}

/// The Stage I and Stage II settings of the toy runs (the demo's, the toy paper's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyStages {
    /// Where the SAE reads and is spliced.
    pub hookpoint: Hookpoint,
    /// SAE latents.
    pub num_latents: usize,
    /// SAE active latents.
    pub k: usize,
    /// Stage I steps.
    pub stage1_steps: u64,
    /// Stage II (and SFT baseline) steps.
    pub stage2_steps: u64,
    /// Stage II learning rate.
    pub stage2_lr: f64,
    /// Chunks per Stage II step.
    pub stage2_batch: usize,
    /// LoRA rank (alpha = 4 × rank).
    pub lora_r: usize,
    /// Tokens per training chunk.
    pub ctx_len: usize,
}

impl Default for ToyStages {
    fn default() -> Self {
        ToyStages {
            hookpoint: Hookpoint::Residual(3),
            num_latents: 1024,
            k: 16,
            stage1_steps: 150,
            stage2_steps: 150,
            stage2_lr: 1e-3,
            stage2_batch: 4,
            lora_r: 8,
            ctx_len: 64,
        }
    }
}

/// Where one toy run comes from and goes: its folder, models, data and SAE.
#[derive(Debug, Clone)]
pub struct ToyRun<'a> {
    /// Run folder.
    pub out: PathBuf,
    /// Seed of the SAE, the adapters and the data order.
    pub seed: u64,
    /// Stage I model.
    pub source: ModelRef,
    /// Stage II model.
    pub target: ModelRef,
    /// Trigger and elicitation data.
    pub data: &'a Path,
    /// How a row becomes text.
    pub template: Template,
    /// How the SAE is obtained, and from where.
    pub sae: (SaeMode, Option<String>),
    /// Where it reads and is spliced.
    pub hookpoint: Hookpoint,
    /// What Stage II optimises.
    pub objective: ObjectiveKind,
}

impl ToyStages {
    /// The pipeline of one toy run with these settings.
    pub fn pipeline_file(&self, run: ToyRun<'_>) -> PipelineFile {
        let data = run.data.display().to_string();
        PipelineFile {
            out: run.out,
            seed: run.seed,
            source: run.source,
            target: run.target,
            data: DataSection {
                trigger: data.clone(),
                elicitation: data,
                template: run.template,
                split: "train".into(),
                ctx_len: self.ctx_len,
                max_rows: None,
            },
            sae: SaeSection {
                mode: run.sae.0,
                path: run.sae.1,
                hookpoint: run.hookpoint,
                num_latents: self.num_latents,
                k: self.k,
                batch_size: 8,
                lr: None,
                max_steps: Some(self.stage1_steps),
                seed: run.seed,
            },
            lora: LoraSection { r: self.lora_r, alpha: 4.0 * self.lora_r as f64, ..LoraSection::default() },
            stage2: Stage2Section {
                objective: run.objective,
                lr: self.stage2_lr,
                epochs: 1000,
                max_steps: Some(self.stage2_steps),
                batch_size: self.stage2_batch,
                save_every: self.stage2_steps.max(1),
                ..Stage2Section::default()
            },
            tensorboard: None,
        }
    }
}

/// One evaluated model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoRow {
    /// Row name in the table.
    pub name: String,
    /// The adapter, if any.
    pub adapter: Option<PathBuf>,
    /// Its evaluation.
    pub report: Report,
}

/// What the demo produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoReport {
    /// Settings.
    pub config: DemoConfig,
    /// Base, CoT-free SFT, SAE-Tuning.
    pub rows: Vec<DemoRow>,
    /// Stage I's last FVU, when it ran in this invocation.
    pub stage1_fvu: Option<f32>,
    /// Stage II's KL: mean of the first and of the last 10 steps (from its metrics file).
    pub stage2_kl: Option<(f32, f32)>,
    /// The SFT baseline's cross-entropy: mean of the first and of the last 10 steps.
    pub sft_loss: Option<(f32, f32)>,
    /// The SAE folder (sparsify format).
    pub sae: PathBuf,
    /// The merged SAE-tuned model.
    pub merged: Option<PathBuf>,
    /// Reasoning features per layer of the toy model, with their mixture.
    pub features: Option<resa_features::Analysis>,
    /// Wall-clock seconds per part.
    pub seconds: Vec<(String, f64)>,
}

/// Progress of the demo.
#[derive(Debug, Clone, Copy)]
pub enum DemoEvent<'a> {
    /// A part begins.
    Begin(&'static str),
    /// Progress inside the SAE-Tuning or SFT pipeline.
    Pipeline(&'static str, PipelineEvent<'a>),
    /// Evaluation progress of one model.
    Eval(&'a str, &'a resa_eval::Progress<'a>),
}

fn pipeline_config(cfg: &DemoConfig, data: &Path, out: PathBuf, objective: ObjectiveKind) -> PipelineFile {
    let model = ModelRef::new(cfg.model.display().to_string());
    let sae_tuning = objective == ObjectiveKind::SaeTuning;
    let mut file = cfg.stages.pipeline_file(ToyRun {
        out,
        seed: cfg.seed,
        source: model.clone(),
        target: model,
        data,
        template: Template::Custom(world::TOY_TEMPLATE.into()),
        // The baseline reuses the SAE-Tuning run's SAE (it does not use it; the pipeline only
        // needs one to load).
        sae: if sae_tuning {
            (SaeMode::Scratch, None)
        } else {
            (SaeMode::Pretrained, Some(cfg.out.join("sae-tuning/stage1").display().to_string()))
        },
        hookpoint: cfg.stages.hookpoint,
        objective,
    });
    file.stage2.merge = sae_tuning;
    file
}

/// Runs the demo on backend `B`.
pub fn run_demo<B: Backend>(
    cfg: &DemoConfig,
    device: &B::Device,
    on_event: &mut dyn FnMut(DemoEvent<'_>),
) -> Result<DemoReport> {
    if !cfg.model.join("config.json").is_file() {
        return Err(Error::Usage(format!(
            "{}: no toy model there (config.json missing); `cargo xtask toy-model` makes it",
            cfg.model.display()
        )));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let mut seconds = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut Vec<(String, f64)>| {
        seconds.push((name.to_string(), clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    on_event(DemoEvent::Begin("data"));
    let data = cfg.out.join("data");
    ToyWorld::with_seed(cfg.seed).write_splits(&data, [cfg.train_rows, 0, cfg.test_problems])?;
    let train = data.join("train.jsonl");

    on_event(DemoEvent::Begin("SAE-Tuning (Stage I + Stage II)"));
    let mut stage1_fvu = None;
    let tuned_cfg = Pipeline::new(
        pipeline_config(cfg, &train, cfg.out.join("sae-tuning"), ObjectiveKind::SaeTuning),
        "the demo's SAE-Tuning run",
    )?;
    let tuned: PipelineReport = run_pipeline::<Autodiff<B>>(&tuned_cfg, device, DType::F32, &mut |e| {
        if let PipelineEvent::Stage1 { fvu, .. } = e {
            stage1_fvu = Some(fvu);
        }
        on_event(DemoEvent::Pipeline("SAE-Tuning", e));
    })?;
    lap("sae-tuning", &mut seconds);

    on_event(DemoEvent::Begin("CoT-free SFT baseline"));
    let sft_cfg = Pipeline::new(
        pipeline_config(cfg, &train, cfg.out.join("cot-free-sft"), ObjectiveKind::Sft),
        "the demo's SFT run",
    )?;
    let sft = run_pipeline::<Autodiff<B>>(&sft_cfg, device, DType::F32, &mut |e| {
        on_event(DemoEvent::Pipeline("CoT-free SFT", e));
    })?;
    lap("cot-free-sft", &mut seconds);

    let task = crate::world::World::Arith.test_task(cfg.seed, cfg.test_problems);
    let eval_cfg = EvalConfig {
        sampling: cfg.sampling,
        max_new_tokens: cfg.max_new_tokens,
        seed: cfg.seed,
        batch_size: 50,
        ..EvalConfig::default()
    };
    // The base model is loaded once; each row attaches its adapter (or none).
    let base = ModelRef::new(cfg.model.display().to_string());
    let mut evaluation = Evaluation::<B>::new(&base, vec![task], eval_cfg, device, DType::F32)?;
    let mut rows = Vec::new();
    for (name, dir, adapter) in [
        ("Toy model (base)", "eval/base", None),
        ("CoT-free SFT", "eval/cot-free-sft", Some(sft.adapter.clone())),
        ("SAE-Tuning", "eval/sae-tuning", Some(tuned.adapter.clone())),
    ] {
        on_event(DemoEvent::Begin(name));
        match &adapter {
            Some(a) => evaluation.with_adapter(a)?,
            None => evaluation.without_adapter(),
        }
        let report = evaluation.run(&cfg.out.join(dir), name, |p| on_event(DemoEvent::Eval(name, p)))?;
        rows.push(DemoRow { name: name.into(), adapter, report });
    }
    lap("evaluation", &mut seconds);

    on_event(DemoEvent::Begin("reasoning features (SAEs on every layer)"));
    let features = reasoning_features::<B>(cfg, &tuned_cfg, device, on_event)?;
    lap("features", &mut seconds);

    let report = DemoReport {
        config: cfg.clone(),
        rows,
        stage1_fvu,
        stage2_kl: loss_ends(&cfg.out.join("sae-tuning/stage2/metrics.jsonl")),
        sft_loss: loss_ends(&cfg.out.join("cot-free-sft/stage2/metrics.jsonl")),
        sae: tuned.sae.clone(),
        merged: tuned.merged.clone(),
        features: Some(features),
        seconds,
    };
    write_report(&report)?;
    Ok(report)
}

/// Mean loss of the first and of the last 10 steps recorded in a Stage II metrics file.
fn loss_ends(path: &Path) -> Option<(f32, f32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let losses: Vec<f32> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64())
        .map(|v| v as f32)
        .collect();
    let n = losses.len().min(10);
    if n == 0 {
        return None;
    }
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len() as f32;
    Some((mean(&losses[..n]), mean(&losses[losses.len() - n..])))
}

/// Stage I on every layer of the toy model ([`SaeTraining`] with the SAE-Tuning run's
/// `[sae]` and trigger data, into `features/stage1/`; skipped when its SAEs exist), then
/// [`resa_features::extract`] on the R1 system prompt and [`resa_features::analyze`].
fn reasoning_features<B: Backend>(
    cfg: &DemoConfig,
    tuned: &Pipeline,
    device: &B::Device,
    on_event: &mut dyn FnMut(DemoEvent<'_>),
) -> Result<resa_features::Analysis> {
    let dir = cfg.out.join("features");
    let model = Qwen2ForCausalLM::<B>::from_pretrained(&cfg.model, device, DType::F32)?;
    let layers = model.config().num_hidden_layers;
    let hookpoints: Vec<Hookpoint> = (0..layers).map(Hookpoint::Residual).collect();
    let every_layer =
        Pipeline::new(PipelineFile { out: dir.clone(), ..tuned.file().clone() }, "the demo's feature SAEs")?;
    let stage = SaeTraining { pipeline: &every_layer, hookpoints: hookpoints.clone(), source_dir: cfg.model.clone() };
    let (saes_dir, _) = run_stage::<Autodiff<B>, _>(&stage, device, DType::F32, &mut |e| {
        on_event(DemoEvent::Pipeline("features", e));
    })?;
    let saes = resa_pipeline::features::load_saes::<B>(&saes_dir, layers, device)?;
    let tokenizer = Tokenizer::from_dir(&cfg.model)?;
    resa_pipeline::features::reasoning_features(
        &model,
        &tokenizer,
        &saes,
        &resa_pipeline::features::FeatureOptions {
            dashboard: Some(resa_pipeline::features::Dashboard {
                dataset: tuned.file().data.trigger.clone(),
                rows: 200,
                top: 5,
            }),
            html: true,
            ..Default::default()
        },
        &dir,
    )
}

/// The Table-3-shaped comparison.
pub fn table(report: &DemoReport) -> String {
    let rows: Vec<(&str, &Report)> = report.rows.iter().map(|r| (r.name.as_str(), &r.report)).collect();
    compare_markdown(&rows)
}

fn write_report(report: &DemoReport) -> Result<()> {
    let out = &report.config.out;
    let mut md = String::new();
    md.push_str("# resa demo: SAE-Tuning on the toy reasoning world\n\n");
    md.push_str(&format!(
        "Pass@1 (%) ± standard error on {} held-out toy problems, {} (the shape of the paper's Table 3).\n\n",
        report.config.test_problems,
        match report.config.sampling {
            Sampling::Greedy => "greedy".to_string(),
            Sampling::Sample { temperature, top_p, .. } => format!("temperature {temperature}, top-p {top_p}"),
        }
    ));
    md.push_str(&table(report));
    md.push_str("\n## Runs\n\n");
    if let Some(f) = report.stage1_fvu {
        md.push_str(&format!(
            "- Stage I: last FVU {f:.4} ({} latents, k {}).\n",
            report.config.stages.num_latents, report.config.stages.k
        ));
    }
    if let Some((a, b)) = report.stage2_kl {
        md.push_str(&format!("- Stage II (SAE-guided, KL; mean of the first → last 10 steps): {a:.4} → {b:.4}.\n"));
    }
    if let Some((a, b)) = report.sft_loss {
        md.push_str(&format!("- CoT-free SFT (cross-entropy; first → last 10 steps): {a:.4} → {b:.4}.\n"));
    }
    md.push_str(&format!("- SAE: `{}` (sparsify folder).\n", report.sae.display()));
    if let Some(m) = &report.merged {
        md.push_str(&format!("- Merged SAE-tuned model: `{}`.\n", m.display()));
    }
    for r in &report.rows {
        let b = &r.report.benches[0];
        md.push_str(&format!(
            "- {}: mean {:.1} new tokens per completion, {} truncated.\n",
            r.name, b.mean_new_tokens, b.truncated
        ));
    }
    if let Some(f) = &report.features {
        md.push_str(
            "\n## Reasoning features (details in `features/summary.md`; each feature in `features/dashboard.html`)\n\n| Hookpoint | Features |\n|---|---:|\n",
        );
        for l in &f.layers {
            md.push_str(&format!("| {} | {} |\n", l.hookpoint, l.count));
        }
        if let Some(p) = f.counts.proposals.first() {
            md.push_str(&format!("\nSuggested hookpoint: `{}` — {}.\n", p.hookpoint, p.reason));
        }
    }
    md.push_str("\nTimes: ");
    md.push_str(&report.seconds.iter().map(|(n, s)| format!("{n} {s:.0} s")).collect::<Vec<_>>().join(", "));
    md.push_str("\n\n![Pass@1](figures/pass_at_1.svg)\n");
    md.push_str(&resa_pipeline::curves::curves_section(out));
    let figures = out.join("figures");
    std::fs::create_dir_all(&figures).map_err(|e| Error::io(&figures, e))?;
    resa_publish::write_atomic(figures.join("pass_at_1.svg"), bar_chart(report).as_bytes())?;
    resa_publish::write_atomic(out.join("report.md"), md.as_bytes())?;
    resa_publish::write_atomic(
        out.join("report.json"),
        serde_json::to_string_pretty(report).map_err(|e| Error::json("the demo report", e))?.as_bytes(),
    )?;
    Ok(())
}

/// A bar chart of Pass@1 with standard-error whiskers, as SVG.
fn bar_chart(report: &DemoReport) -> String {
    let (w, h, left, bottom, top) = (520.0, 300.0, 60.0, 40.0, 30.0);
    let plot_h = h - bottom - top;
    let n = report.rows.len().max(1) as f64;
    let slot = (w - left - 20.0) / n;
    let y = |pct: f64| top + plot_h * (1.0 - pct.clamp(0.0, 100.0) / 100.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Pass@1 on the toy test split (%)</text>\n",
        w / 2.0
    );
    for t in [0.0, 25.0, 50.0, 75.0, 100.0] {
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{t:.0}</text>\n",
            w - 20.0,
            left - 6.0,
            y(t) + 4.0,
            y = y(t)
        ));
    }
    let colours = ["#8c8c8c", "#e08a3c", "#3c7be0"];
    for (i, r) in report.rows.iter().enumerate() {
        let b = &r.report.benches[0];
        let x = left + slot * i as f64 + slot * 0.2;
        let bw = slot * 0.6;
        let (top_y, base_y) = (y(b.pass_at_1_pct), y(0.0));
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{top_y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n",
            base_y - top_y,
            colours[i % colours.len()]
        ));
        let cx = x + bw / 2.0;
        s.push_str(&format!(
            "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n",
            y(b.pass_at_1_pct - b.stderr_pct),
            y(b.pass_at_1_pct + b.stderr_pct)
        ));
        s.push_str(&format!(
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}</text>\n<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            top_y - 6.0,
            b.pass_at_1_pct,
            h - bottom + 18.0,
            escape(&r.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
