#![doc = include_str!("../README.md")]

pub mod dashboard;
pub mod error;
pub mod extract;
pub mod gmm;
#[cfg(feature = "plot")]
pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use extract::{Extraction, LayerFeatures, R1_SYSTEM_PROMPT, extract, reasoning_latents};
pub use gmm::{Component, Gmm, GmmOptions, Proposal, entropy, fit_gmm, propose};

/// A mixture fitted to one per-layer quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMixture {
    /// What weighted the layers (`reasoning-feature count` or `score`).
    pub quantity: String,
    /// The fit (absent when too few layers carry weight).
    pub gmm: Option<Gmm>,
    /// Entropy (nats) of the quantity normalised over layers.
    pub entropy: f64,
    /// Suggested hookpoints from this fit.
    pub proposals: Vec<Proposal>,
    /// Set when fewer layers carry weight than components were asked for, and the fit used
    /// one component per such layer instead.
    pub note: Option<String>,
}

/// Everything `resa features` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Features per hookpoint.
    pub layers: Vec<LayerFeatures>,
    /// Per-hookpoint scores, when given.
    pub scores: Option<BTreeMap<String, f64>>,
    /// Mixture over the counts.
    pub counts: LayerMixture,
    /// Mixture over the scores, when given.
    pub score_mixture: Option<LayerMixture>,
    /// Figures written.
    pub figures: Vec<PathBuf>,
}

fn mixture(layers: &[usize], weights: &[f64], quantity: &str, opts: &GmmOptions) -> LayerMixture {
    let x: Vec<f64> = layers.iter().map(|&l| l as f64).collect();
    let carrying = weights.iter().filter(|w| **w > 0.0).count();
    let mut opts = opts.clone();
    let mut note = None;
    if carrying > 0 && carrying < opts.components {
        note = Some(format!(
            "only {carrying} layer(s) carry weight: fitted {carrying} component(s) instead of {}",
            opts.components
        ));
        opts.components = carrying;
    }
    let gmm = match fit_gmm(&x, weights, &opts) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!("no mixture over {quantity}: {e}");
            None
        }
    };
    let proposals = gmm.as_ref().map(|g| propose(g, layers, quantity)).unwrap_or_default();
    LayerMixture { quantity: quantity.into(), gmm, entropy: entropy(weights), proposals, note }
}

/// Reads per-hookpoint scores: a JSON object `{"layers.1": 43.2, …}`.
pub fn read_scores(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Io { path: path.into(), cause })?;
    serde_json::from_str(&text).map_err(|e| Error::Malformed {
        path: path.into(),
        message: format!("expected a JSON object of hookpoint → number, e.g. {{\"layers.1\": 43.2}}: {e}"),
    })
}

/// Fits the mixtures, proposes hookpoints, draws the figures and writes `counts.json`,
/// `gmm.json`, `figures/*.svg|png` and `summary.md` into `out`.
pub fn analyze(
    features: Vec<LayerFeatures>,
    scores: Option<BTreeMap<String, f64>>,
    opts: &GmmOptions,
    out: &Path,
) -> Result<Analysis> {
    let io = |path: &Path, cause| Error::Io { path: path.into(), cause };
    std::fs::create_dir_all(out.join("figures")).map_err(|e| io(out, e))?;
    let layers: Vec<usize> = features.iter().map(|f| f.layer).collect();
    let counts: Vec<f64> = features.iter().map(|f| f.count as f64).collect();
    let count_mix = mixture(&layers, &counts, "reasoning-feature count", opts);
    let score_mix = match &scores {
        Some(s) => {
            let mut w = Vec::with_capacity(features.len());
            for f in &features {
                w.push(*s.get(&f.hookpoint.to_string()).ok_or_else(|| Error::Input {
                    field: "scores",
                    message: format!(
                        "no score for {} (scores name: {})",
                        f.hookpoint,
                        s.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })?);
            }
            Some((w.clone(), mixture(&layers, &w, "score", opts)))
        }
        None => None,
    };
    let figures = figures(&layers, &counts, &count_mix, score_mix.as_ref(), out)?;
    let analysis =
        Analysis { layers: features, scores, counts: count_mix, score_mixture: score_mix.map(|(_, m)| m), figures };
    let write =
        |name: &str, text: String| resa_publish::write_atomic(out.join(name), text.as_bytes()).map_err(Error::from);
    let json_err = |e: serde_json::Error| Error::Input { field: "analysis", message: e.to_string() };
    write("counts.json", serde_json::to_string_pretty(&analysis.layers).map_err(json_err)?)?;
    let mixtures = GmmFile { counts: &analysis.counts, scores: analysis.score_mixture.as_ref() };
    write("gmm.json", serde_json::to_string_pretty(&mixtures).map_err(json_err)?)?;
    write("summary.md", summary(&analysis))?;
    Ok(analysis)
}

/// The layout of `gmm.json`.
#[derive(Serialize)]
struct GmmFile<'a> {
    counts: &'a LayerMixture,
    scores: Option<&'a LayerMixture>,
}

/// The Markdown summary.
pub fn summary(a: &Analysis) -> String {
    let mut s = String::from("# Reasoning features per layer\n\n");
    s.push_str(
        "A latent is a reasoning feature of its layer when it is active at `<think>`, at `</think>`, \
         and at no other token of the prompt.\n\n| Hookpoint | Features |",
    );
    if a.scores.is_some() {
        s.push_str(" Score |");
    }
    s.push_str("\n|---|---:|");
    if a.scores.is_some() {
        s.push_str("---:|");
    }
    s.push('\n');
    for l in &a.layers {
        let _ = write!(s, "| {} | {} |", l.hookpoint, l.count);
        if let Some(sc) = &a.scores {
            let _ = write!(s, " {} |", sc.get(&l.hookpoint.to_string()).map(|v| format!("{v:.2}")).unwrap_or_default());
        }
        s.push('\n');
    }
    for mix in std::iter::once(&a.counts).chain(a.score_mixture.as_ref()) {
        let _ = writeln!(s, "\n## Mixture over layers, weighted by {}\n", mix.quantity);
        let _ = writeln!(s, "Entropy of the normalised distribution: {:.3} nats.\n", mix.entropy);
        if let Some(n) = &mix.note {
            let _ = writeln!(s, "Note: {n}.\n");
        }
        match &mix.gmm {
            Some(g) => {
                let _ = writeln!(s, "| Component | Mean (layer) | SD | Weight |\n|---:|---:|---:|---:|");
                for (i, c) in g.components.iter().enumerate() {
                    let _ = writeln!(s, "| {} | {:.2} | {:.2} | {:.1}% |", i + 1, c.mean, c.std, 100.0 * c.weight);
                }
                let _ = writeln!(
                    s,
                    "\nLog-likelihood {:.3} ({:.4} per unit weight).",
                    g.log_likelihood, g.mean_log_likelihood
                );
            }
            None => s.push_str("Too few layers carry weight for a mixture.\n"),
        }
        if !mix.proposals.is_empty() {
            s.push_str("\nSuggested hookpoints for SAE-Tuning:\n\n");
            for p in &mix.proposals {
                let _ = writeln!(s, "- `{}`: {}", p.hookpoint, p.reason);
            }
        }
    }
    if !a.figures.is_empty() {
        s.push_str("\n## Figures\n\n");
        for f in a.figures.iter().filter(|f| f.extension().is_some_and(|e| e == "svg")) {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = writeln!(s, "![{name}](figures/{name})");
        }
    }
    s
}

/// The figures of [`analyze`] (with the `plot` feature and a font; none otherwise, with a
/// warning).
#[cfg(feature = "plot")]
fn figures(
    layers: &[usize],
    counts: &[f64],
    count_mix: &LayerMixture,
    score_mix: Option<&(Vec<f64>, LayerMixture)>,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let mut figures = Vec::new();
    if plot::font_available().is_some() {
        figures.extend(plot::counts_figure(
            layers,
            counts,
            count_mix.gmm.as_ref(),
            "Reasoning features per layer",
            "features",
            &out.join("figures/counts"),
        )?);
        if let Some((w, mix)) = score_mix {
            figures.extend(plot::counts_figure(
                layers,
                w,
                mix.gmm.as_ref(),
                "Score per layer",
                "score",
                &out.join("figures/scores"),
            )?);
            figures.extend(plot::counts_vs_scores_figure(layers, counts, w, &out.join("figures/counts_vs_scores"))?);
        }
    } else {
        tracing::warn!("no TrueType font found (set RESA_FONT): figures skipped");
    }
    Ok(figures)
}

/// Without the `plot` feature there are no figures.
#[cfg(not(feature = "plot"))]
fn figures(
    _layers: &[usize],
    _counts: &[f64],
    _count_mix: &LayerMixture,
    _score_mix: Option<&(Vec<f64>, LayerMixture)>,
    _out: &Path,
) -> Result<Vec<PathBuf>> {
    tracing::warn!("resa-features was built without the `plot` feature: figures skipped");
    Ok(Vec::new())
}
