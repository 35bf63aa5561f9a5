//! The feature stage: the reasoning features of one prompt on every hookpoint with an SAE,
//! their mixture over layers, suggested hookpoints and figures ([`resa_features::analyze`]),
//! and optionally a dashboard of each feature's strongest contexts in a dataset. `resa
//! features` and `resa demo` run it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use resa_features::dashboard::{FeatureCard, LayerCard, Page, html};
use resa_features::extract::{ActiveLatents, Context, activation_at, decoder_neighbours, extract, positions};
use resa_features::{Analysis, GmmOptions, R1_SYSTEM_PROMPT, analyze, read_scores};
use resa_qwen2::{Hookpoint, Qwen2ForCausalLM, Tokenizer};
use resa_sae::SparseCoder;

use crate::error::{Error, Result};

/// What the feature stage reads and how.
#[derive(Debug, Clone)]
pub struct FeatureOptions {
    /// The prompt (default: the DeepSeek-R1 system prompt, which holds `<think>` and `</think>`).
    pub prompt: Option<String>,
    /// The opening marker token.
    pub think_token: String,
    /// The closing marker token.
    pub end_think_token: String,
    /// A latent counts as active above this activation.
    pub threshold: f32,
    /// Per-hookpoint scores, JSON `{"layers.1": 43.2, …}`.
    pub scores: Option<PathBuf>,
    /// The mixture fit.
    pub gmm: GmmOptions,
    /// A dashboard of the strongest contexts in a dataset (`dashboard.md`, and in
    /// `dashboard.html` with `html`).
    pub dashboard: Option<Dashboard>,
    /// Write `dashboard.html`: the counts and figures, and per reasoning feature its
    /// activation at the markers, its decoder neighbours and (with `dashboard`) its contexts.
    pub html: bool,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            prompt: None,
            think_token: "<think>".into(),
            end_think_token: "</think>".into(),
            threshold: 0.0,
            scores: None,
            gmm: GmmOptions::default(),
            dashboard: None,
            html: false,
        }
    }
}

/// Where the dashboard searches.
#[derive(Debug, Clone)]
pub struct Dashboard {
    /// Question–answer data (file, folder, registry name or hub id) whose problems are searched.
    pub dataset: String,
    /// Rows searched.
    pub rows: usize,
    /// Contexts kept per feature.
    pub top: usize,
}

/// The SAEs of a folder of sparsify hookpoint folders, each name checked against a model of
/// `layers` layers, sorted by layer.
pub fn load_saes<B: Backend>(
    dir: &Path,
    layers: usize,
    device: &B::Device,
) -> Result<Vec<(Hookpoint, SparseCoder<B>)>> {
    let mut saes = Vec::new();
    for (name, sae) in SparseCoder::<B>::load_many(dir, device)? {
        let hp = name
            .parse::<Hookpoint>()
            .and_then(|h| h.within(layers))
            .map_err(|e| Error::SaeFolder { path: dir.join(&name), message: e.to_string() })?
            .hookpoint();
        saes.push((hp, sae));
    }
    saes.sort_by_key(|(h, _)| (h.layer(), h.to_string()));
    Ok(saes)
}

/// The strongest contexts of every reasoning feature in the dashboard's data, written as
/// `dashboard.md`; returned by `(hookpoint, latent)`.
fn strongest_contexts<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    tokenizer: &Tokenizer,
    saes: &[(Hookpoint, SparseCoder<B>)],
    analysis: &Analysis,
    d: &Dashboard,
    out: &Path,
) -> Result<BTreeMap<(String, u32), Vec<Context>>> {
    let (rows, _, _) = resa_data::load_dataset(&d.dataset, "train", &resa_data::ReadOptions::default())?;
    let texts = rows
        .iter()
        .take(d.rows)
        .map(|r| tokenizer.encode(&r.problem, true))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let decode = |ids: &[u32]| tokenizer.decode(ids, false).unwrap_or_default().replace('\n', "⏎");
    let mut md = String::from("# Reasoning features: strongest contexts\n\n");
    let mut all = BTreeMap::new();
    for ((hp, sae), layer) in saes.iter().zip(&analysis.layers) {
        if layer.latents.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {hp}\n");
        let found = resa_features::extract::top_contexts(model, *hp, sae, &layer.latents, &texts, d.top, 8, &decode)?;
        for (latent, contexts) in found {
            let _ = writeln!(md, "### latent {latent}\n");
            if contexts.is_empty() {
                md.push_str("(never active on the dataset)\n\n");
            }
            for c in &contexts {
                let _ = writeln!(md, "- {:.3}: `{}`**`{}`**`{}`", c.activation, c.before, c.token, c.after);
            }
            md.push('\n');
            all.insert((hp.to_string(), latent), contexts);
        }
    }
    resa_publish::write_atomic(out.join("dashboard.md"), md.as_bytes())?;
    Ok(all)
}

/// The dashboard's card of every reasoning feature: its strongest activation at each
/// marker (from the prompt's activity the features were read from), its decoder
/// neighbours, and its contexts when some were searched.
fn feature_cards<B: Backend>(
    saes: &[(Hookpoint, SparseCoder<B>)],
    analysis: &Analysis,
    activity: &[ActiveLatents],
    (think_at, end_at): &(Vec<usize>, Vec<usize>),
    contexts: Option<&BTreeMap<(String, u32), Vec<Context>>>,
) -> Result<Vec<LayerCard>> {
    let mut layers = Vec::with_capacity(saes.len());
    for (((hp, sae), layer), active) in saes.iter().zip(&analysis.layers).zip(activity) {
        let neighbours = decoder_neighbours(sae, &layer.latents, 5)?;
        let features = layer
            .latents
            .iter()
            .zip(neighbours)
            .map(|(&latent, neighbours)| FeatureCard {
                latent,
                at_think: activation_at(active, think_at, latent),
                at_end_think: activation_at(active, end_at, latent),
                neighbours,
                contexts: contexts.and_then(|c| c.get(&(hp.to_string(), latent))).cloned().unwrap_or_default(),
            })
            .collect();
        layers.push(LayerCard { hookpoint: hp.to_string(), features });
    }
    Ok(layers)
}

/// The analysis's SVG figures with captions that say what they show, to inline in a page.
fn inline_figures(analysis: &Analysis) -> Vec<(String, String)> {
    analysis
        .figures
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
        .filter_map(|f| {
            // The paths the analysis wrote (under `out`).
            let svg = std::fs::read_to_string(f).ok()?;
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let caption = match stem.as_str() {
                "counts" => "Reasoning features per layer, with the mixture fitted over layers".to_string(),
                "scores" => "The score per layer, with its mixture".to_string(),
                "counts_vs_scores" => "Reasoning features against the score, per layer".to_string(),
                other => other.replace('_', " "),
            };
            Some((caption, svg))
        })
        .collect()
}

/// Runs the feature stage into `out`: `counts.json`, `gmm.json`, `summary.md`, figures (the
/// `plot` feature), with a dashboard `dashboard.md`, and with `html` `dashboard.html`.
pub fn reasoning_features<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    tokenizer: &Tokenizer,
    saes: &[(Hookpoint, SparseCoder<B>)],
    opts: &FeatureOptions,
    out: &Path,
) -> Result<Analysis> {
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| Error::Usage(format!("the tokenizer has no token `{token}` (the marker options name the tokens `<think>` and `</think>` stand for)")))
    };
    let (think, end) = (id(&opts.think_token)?, id(&opts.end_think_token)?);
    let ids = tokenizer.encode(opts.prompt.as_deref().unwrap_or(R1_SYSTEM_PROMPT), true)?;
    let resa_features::Extraction { layers: features, activity } =
        extract(model, saes, &ids, think, end, opts.threshold)?;
    let scores = opts.scores.as_deref().map(read_scores).transpose()?;
    let analysis = analyze(features, scores, &opts.gmm, out)?;
    let contexts = match &opts.dashboard {
        Some(d) => Some(strongest_contexts(model, tokenizer, saes, &analysis, d, out)?),
        None => None,
    };
    if opts.html {
        let markers = (positions(&ids, think), positions(&ids, end));
        let layers = feature_cards(saes, &analysis, &activity, &markers, contexts.as_ref())?;
        let subtitle = format!(
            "{} hookpoints; prompt of {} tokens; {}",
            saes.len(),
            ids.len(),
            opts.dashboard.as_ref().map_or_else(
                || "no data searched for contexts".to_string(),
                |d| format!("contexts from the first {} problems of {}", d.rows, d.dataset)
            )
        );
        let figures = inline_figures(&analysis);
        let page =
            Page { title: "Reasoning features", subtitle: &subtitle, figures, searched: opts.dashboard.is_some() };
        resa_publish::write_atomic(out.join("dashboard.html"), html(&page, &layers).as_bytes())?;
    }
    Ok(analysis)
}
