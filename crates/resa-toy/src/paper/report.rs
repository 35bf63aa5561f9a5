//! `report.md`, `report.json` and the figures of the toy paper.

use std::path::Path;

use super::{ToyPaperReport, ToyRow};
use crate::error::{Error, Result};

/// The tables of the report, in order.
const TABLES: [(&str, &str); 4] = [
    ("3", "Table 3: the RL source and SAE-Tuning"),
    ("4", "Table 4: SAE mode and source checkpoint"),
    ("5", "Table 5: reasoning as an adapter"),
    ("6", "Table 6: hookpoint layer"),
];

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() > 1 { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, sd)
}

/// Writes `report.md` and `report.json` into the report's output folder.
pub(super) fn write_report(report: &ToyPaperReport) -> Result<()> {
    let out = &report.config.out;
    let md = markdown(report) + &resa_pipeline::curves::curves_section(out);
    resa_publish::write_atomic(out.join("report.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::json("the toy paper report", e))?;
    resa_publish::write_atomic(out.join("report.json"), json.as_bytes())?;
    Ok(())
}

/// The report as Markdown: every table with a column per seed, the claims over the seeds.
fn markdown(report: &ToyPaperReport) -> String {
    let c = &report.config;
    let seeds = c.seed_list();
    let mut md = format!("# The toy paper: Resa's claims on the toy model (world `{}`)\n\n", c.world);
    md.push_str(&format!(
        "Pass@1 (%) ± standard error on {} held-out toy problems × {} samples (temperature 0.6, top-p 0.95), seeds \
         {}; within a seed every model is evaluated with the same sampling seeds. The RL source is a toy Tina: {} \
         LoRA-GRPO steps of {} prompts × {} completions. SAE-Tuning: SAE at {} ({} latents, k {}), {} Stage II steps \
         on CoT-free toy data. \"Reasoning\" is the share of completions with a step inside `<think>`.\n\n",
        c.eval.problems,
        c.eval.samples,
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        c.tina.steps,
        c.tina.prompts_per_step,
        c.tina.group_size,
        c.stages.hookpoint,
        c.stages.num_latents,
        c.stages.k,
        c.stages.stage2_steps
    ));
    for (table, title) in TABLES {
        md.push_str(&table_markdown(report, table, title, &seeds));
    }
    for m in &report.mixtures {
        md.push_str(&format!(
            "Seed {}: the layer mixture by {} suggests {}.\n",
            m.seed,
            m.by,
            m.hookpoint.as_deref().unwrap_or("no hookpoint")
        ));
    }
    md.push_str(&claims_markdown(report, &seeds));
    md.push_str("\nTimes: ");
    md.push_str(&report.seconds.iter().map(|(n, s)| format!("{n} {s:.0} s")).collect::<Vec<_>>().join(", "));
    md.push_str("\n\n## Figures\n\nPer seed: ");
    md.push_str(
        &seeds
            .iter()
            .map(|s| {
                format!("[seed {s}](seed-{s}/figures/) (Tables 3–6 with error bars, Pass@1 by the source's RL step)")
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    md.push_str(
        ". The layer mixtures: `seed-N/features/figures/`; each reasoning feature: `seed-N/features/dashboard.html`.\n",
    );
    md
}

/// One table: a row per model, a column per seed, the mean ± s.d. over the seeds.
fn table_markdown(report: &ToyPaperReport, table: &str, title: &str, seeds: &[u64]) -> String {
    let mut ids: Vec<(&str, &str)> = Vec::new();
    for r in report.rows.iter().filter(|r| r.table == table) {
        if !ids.iter().any(|(id, _)| *id == r.id) {
            ids.push((&r.id, &r.name));
        }
    }
    if ids.is_empty() {
        return String::new();
    }
    let features = table == "6";
    let mut md = format!("## {title}\n\n| Model |");
    for s in seeds {
        md.push_str(&format!(" seed {s} |"));
    }
    md.push_str(" mean ± s.d. | reasoning (%) |");
    md.push_str(if features { " reasoning features |\n" } else { "\n" });
    md.push_str(&format!("|---|{}---:|---:|{}\n", "---:|".repeat(seeds.len()), if features { "---:|" } else { "" }));
    for (id, name) in ids {
        let rows: Vec<&ToyRow> = report.rows.iter().filter(|r| r.id == id).collect();
        md.push_str(&format!("| {name} |"));
        for s in seeds {
            match rows.iter().find(|r| r.seed == *s) {
                Some(r) => md.push_str(&format!(" {:.2} ± {:.2} |", r.pass_at_1, r.stderr)),
                None => md.push_str(" — |"),
            }
        }
        let (mean, sd) = mean_sd(&rows.iter().map(|r| r.pass_at_1).collect::<Vec<_>>());
        let (reasoned, _) = mean_sd(&rows.iter().map(|r| r.reasoned_pct).collect::<Vec<_>>());
        md.push_str(&format!(" {mean:.2} ± {sd:.2} | {reasoned:.0} |"));
        if features {
            let counts: Vec<String> = seeds
                .iter()
                .map(|s| {
                    report
                        .feature_counts
                        .iter()
                        .find(|f| f.seed == *s && f.hookpoint == id)
                        .map_or("—".to_string(), |f| f.count.to_string())
                })
                .collect();
            md.push_str(&format!(" {} |", counts.join(" / ")));
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

/// The claims over the seeds, and each seed's paired difference.
fn claims_markdown(report: &ToyPaperReport, seeds: &[u64]) -> String {
    let mut md = String::from(
        "\n## The paper's claims at toy scale\n\nA claim holds when it holds in a majority of the seeds. Paired \
         difference: first row − second row, points, mean ± s.d. over the seeds.\n\n| Claim | Toy test | Holds in | \
         Mean difference | Per seed | Verdict |\n|---|---|---:|---:|---|---|\n",
    );
    for s in &report.summary {
        let of_claim: Vec<_> = report.claims.iter().filter(|c| c.id == s.id).collect();
        let test = of_claim.first().map_or("", |c| c.test.as_str());
        let per_seed: Vec<String> = seeds
            .iter()
            .filter_map(|seed| of_claim.iter().find(|c| c.seed == *seed))
            .map(|c| match c.ratio {
                Some(r) => format!("{:.0} % [{:.0}, {:.0}]", 100.0 * r.estimate, 100.0 * r.low, 100.0 * r.high),
                None => format!("{:+.2} ± {:.2}", c.diff, c.stderr),
            })
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} of {} | {:+.2} ± {:.2} | {} | {} |\n",
            s.claim,
            test,
            s.holds_in,
            s.seeds,
            s.mean_diff,
            s.sd_diff,
            per_seed.join("; "),
            if s.holds { "holds" } else { "does not hold" }
        ));
    }
    md
}

/// The figures of one seed in `dir/figures` (plotters, the `plot` feature, when a font is
/// found): Pass@1 with error bars per table, Pass@1 against the source's RL step. A figure
/// that cannot be drawn is logged, not fatal.
#[cfg(feature = "plot")]
pub(super) fn seed_figures(dir: &Path, rows: &[ToyRow], last_step: u64) {
    if resa_features::plot::font_available().is_none() {
        tracing::warn!("no figures: no TrueType font found; set RESA_FONT");
        return;
    }
    let figures = dir.join("figures");
    if let Err(e) = std::fs::create_dir_all(&figures) {
        tracing::warn!("figures not drawn: {e}");
        return;
    }
    for (table, _) in TABLES {
        let rows: Vec<&ToyRow> = rows.iter().filter(|r| r.table == table || (table != "3" && r.id == "base")).collect();
        if rows.iter().all(|r| r.id == "base") {
            continue;
        }
        let labels: Vec<String> = rows.iter().map(|r| short_name(r)).collect();
        let values: Vec<f64> = rows.iter().map(|r| r.pass_at_1).collect();
        let errors: Vec<f64> = rows.iter().map(|r| r.stderr).collect();
        let title = format!("Table {table} at toy scale (seed {})", rows[0].seed);
        if let Err(e) =
            resa_features::plot::bars_figure(&labels, &values, &errors, &title, &figures.join(format!("table{table}")))
        {
            tracing::warn!("figure not drawn: {e}");
        }
    }
    let mut curve: Vec<(u64, f64)> =
        rows.iter().filter_map(|r| Some((r.id.strip_prefix("source-")?.parse().ok()?, r.pass_at_1))).collect();
    if let Some(main) = rows.iter().find(|r| r.id == "sae-tuning") {
        curve.push((last_step, main.pass_at_1));
    }
    curve.sort_unstable_by_key(|p| p.0);
    if curve.len() > 1
        && let Err(e) = resa_features::plot::steps_figure(
            &curve,
            None,
            "SAE-Tuning (fine-tuned SAE) by the source's LoRA-GRPO step",
            "the toy Tina's RL step (0: the base model as source)",
            &figures.join("source-steps"),
        )
    {
        tracing::warn!("figure not drawn: {e}");
    }
}

/// A row's name short enough for a bar label.
#[cfg(feature = "plot")]
fn short_name(r: &ToyRow) -> String {
    match r.id.as_str() {
        "base" => "base".into(),
        "rl-source" => "toy Tina".into(),
        "sae-tuning" => "SAE-Tuning".into(),
        "cot-free-sft" => "CoT-free SFT".into(),
        "cot-sft" => "CoT SFT".into(),
        "sae-pretrained" => "pretrained SAE".into(),
        "sae-scratch" => "scratch SAE".into(),
        "source-0" => "base source (v4)".into(),
        "source-0-scratch" => "base source (v5)".into(),
        "sibling-adapter" => "sibling's adapter".into(),
        id => match id.strip_prefix("source-") {
            Some(step) => format!("source step {step}"),
            None => id.to_string(),
        },
    }
}

#[cfg(not(feature = "plot"))]
pub(super) fn seed_figures(_dir: &Path, _rows: &[ToyRow], _last_step: u64) {}
