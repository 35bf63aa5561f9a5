//! Prompt-only reasoning-feature extraction (the paper's section 5).
//!
//! Pass one prompt — by default the DeepSeek-R1 system prompt, which holds `<think>` and
//! `</think>` — through the model, encode each hookpoint's activations with its SAE, and
//! call a latent a *reasoning feature* of that layer when it is active (activation above the
//! threshold, among the SAE's selected latents) at a `<think>` token, at a `</think>` token,
//! and at no token that is neither. The prompt may hold each marker more than once (R1's
//! does, twice); a feature needs one active occurrence of each.

use std::collections::{BTreeSet, HashSet};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use resa_qwen2::{ForwardInput, Hookpoint, Hooks, Logits, Qwen2ForCausalLM};
use resa_sae::SparseCoder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default prompt: the system prompt of DeepSeek-R1 (and of the reference code's
/// template), which names the `<think> </think>` tags.
pub const R1_SYSTEM_PROMPT: &str = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.";

/// The reasoning features of one hookpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerFeatures {
    /// The hookpoint, e.g. `layers.12` (serialised as its name).
    pub hookpoint: resa_qwen2::Hookpoint,
    /// Its decoder layer (0-based).
    pub layer: usize,
    /// Number of reasoning features.
    pub count: usize,
    /// Their latent ids, ascending.
    pub latents: Vec<u32>,
}

/// Latents active at each token: `(latent, activation)` pairs per position.
pub type ActiveLatents = Vec<Vec<(u32, f32)>>;

/// The reasoning features among per-token active latents: active (above `threshold`) at a
/// position in `think`, at a position in `end_think`, and at no position outside both.
pub fn reasoning_latents(active: &ActiveLatents, think: &[usize], end_think: &[usize], threshold: f32) -> Vec<u32> {
    let on = |pos: usize| -> HashSet<u32> {
        active.get(pos).map(|v| v.iter().filter(|(_, a)| *a > threshold).map(|(l, _)| *l).collect()).unwrap_or_default()
    };
    let at_think: HashSet<u32> = think.iter().flat_map(|&p| on(p)).collect();
    let at_end: HashSet<u32> = end_think.iter().flat_map(|&p| on(p)).collect();
    let markers: HashSet<usize> = think.iter().chain(end_think).copied().collect();
    let elsewhere: HashSet<u32> = (0..active.len()).filter(|p| !markers.contains(p)).flat_map(on).collect();
    let set: BTreeSet<u32> = at_think.intersection(&at_end).filter(|l| !elsewhere.contains(l)).copied().collect();
    set.into_iter().collect()
}

/// Positions of `id` in `ids`.
pub fn positions(ids: &[u32], id: u32) -> Vec<usize> {
    ids.iter().enumerate().filter(|(_, t)| **t == id).map(|(i, _)| i).collect()
}

/// Per-token active latents of `sae` on activations `x` `[tokens, d_in]`.
pub fn active_latents<B: Backend>(sae: &SparseCoder<B>, x: Tensor<B, 2>) -> Result<ActiveLatents> {
    let enc = sae.encode(x)?;
    let [n, k] = enc.top_acts.dims();
    let acts: Vec<f32> = enc.top_acts.into_data().convert::<f32>().iter::<f32>().collect();
    let idx: Vec<i64> = enc.top_indices.into_data().convert::<i64>().iter::<i64>().collect();
    Ok((0..n).map(|t| (0..k).map(|j| (idx[t * k + j] as u32, acts[t * k + j])).collect()).collect())
}

/// What [`extract`] found on a prompt.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// The reasoning features per hookpoint, in the order of the SAEs given.
    pub layers: Vec<LayerFeatures>,
    /// Each SAE's active latents at every token of the prompt (what the features were read
    /// from: a dashboard shows their activations at the markers).
    pub activity: Vec<ActiveLatents>,
}

/// Runs `ids` through `model` once, encodes every hookpoint with its SAE, and returns the
/// reasoning features per hookpoint (in the order given) with the latents they were read
/// from. `think_id` / `end_think_id` are the ids of `<think>` and `</think>`; each must
/// occur in `ids`.
pub fn extract<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    saes: &[(Hookpoint, SparseCoder<B>)],
    ids: &[u32],
    think_id: u32,
    end_think_id: u32,
    threshold: f32,
) -> Result<Extraction> {
    let think = positions(ids, think_id);
    let end = positions(ids, end_think_id);
    if think.is_empty() || end.is_empty() {
        return Err(Error::Prompt(format!(
            "the prompt holds <think> (id {think_id}) {} time(s) and </think> (id {end_think_id}) {} time(s); both are needed",
            think.len(),
            end.len()
        )));
    }
    let activity = prompt_activity(model, saes, ids)?;
    let layers = saes
        .iter()
        .zip(&activity)
        .map(|((hp, _), active)| {
            let latents = reasoning_latents(active, &think, &end, threshold);
            LayerFeatures { hookpoint: *hp, layer: hp.layer(), count: latents.len(), latents }
        })
        .collect();
    Ok(Extraction { layers, activity })
}

/// Runs `ids` through `model` once and returns, per SAE (in the order given), the latents
/// active at each token.
pub fn prompt_activity<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    saes: &[(Hookpoint, SparseCoder<B>)],
    ids: &[u32],
) -> Result<Vec<ActiveLatents>> {
    let n_layers = model.config().num_hidden_layers;
    let mut checked = Vec::with_capacity(saes.len());
    for (hp, sae) in saes {
        checked.push(hp.within(n_layers)?);
        sae.check_width(model.config().hidden_size)?;
    }
    let device = model.device();
    let input = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, ids.len()]),
        &device,
    );
    let hooks = Hooks::capture(checked);
    let out = model.forward(ForwardInput::new(input).with_logits(Logits::None), &hooks, None)?;
    let mut result = Vec::with_capacity(saes.len());
    for (hp, sae) in saes {
        let act = out
            .activation(*hp)
            .ok_or_else(|| Error::Input { field: "saes", message: format!("{hp} was not captured") })?
            .clone();
        let [_, s, d] = act.dims();
        result.push(active_latents(sae, act.reshape([s, d]))?);
    }
    Ok(result)
}

/// The strongest activation of `latent` at any of `positions` (0 where it is not active).
pub fn activation_at(active: &ActiveLatents, positions: &[usize], latent: u32) -> f32 {
    positions
        .iter()
        .filter_map(|&p| active.get(p))
        .flat_map(|row| row.iter().filter(|(l, _)| *l == latent).map(|(_, a)| *a))
        .fold(0.0, f32::max)
}

/// For each of `latents`, the `n` latents whose decoder directions are nearest its own
/// (cosine similarity, strongest first; the latent itself left out). The directions are
/// normalised once, and all of `latents` are compared in one product.
pub fn decoder_neighbours<B: Backend>(sae: &SparseCoder<B>, latents: &[u32], n: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    let w = sae.w_dec.clone();
    let [count, _] = w.dims();
    if let Some(&bad) = latents.iter().find(|&&l| l as usize >= count) {
        return Err(Error::Input { field: "latent", message: format!("{bad} is not below {count}") });
    }
    if latents.is_empty() {
        return Ok(Vec::new());
    }
    let norms = w.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    let unit = w / norms;
    let device = unit.device();
    let rows = Tensor::<B, 1, Int>::from_data(
        TensorData::new(latents.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(), [latents.len()]),
        &device,
    );
    let sims: Vec<f32> =
        unit.clone().select(0, rows).matmul(unit.transpose()).into_data().convert::<f32>().iter::<f32>().collect();
    Ok(latents
        .iter()
        .zip(sims.chunks(count))
        .map(|(&latent, row)| {
            let mut order: Vec<(u32, f32)> =
                row.iter().enumerate().filter(|(i, _)| *i != latent as usize).map(|(i, &s)| (i as u32, s)).collect();
            order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            order.truncate(n);
            order
        })
        .collect())
}

/// One top-activating context of a latent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Activation at the token.
    pub activation: f32,
    /// Text before the token (a few tokens).
    pub before: String,
    /// The token.
    pub token: String,
    /// Text after it.
    pub after: String,
    /// The window's tokens (before, the token, after), each with the latent's activation
    /// there (0 where it is not active).
    #[serde(default)]
    pub tokens: Vec<(String, f32)>,
}

/// Keeps the `top` strongest contexts per latent of `latents` over `texts` (each tokenised
/// and run through the model; `decode` turns ids back into text).
#[allow(clippy::too_many_arguments)]
pub fn top_contexts<B: Backend>(
    model: &Qwen2ForCausalLM<B>,
    hookpoint: Hookpoint,
    sae: &SparseCoder<B>,
    latents: &[u32],
    texts: &[Vec<u32>],
    top: usize,
    window: usize,
    decode: &dyn Fn(&[u32]) -> String,
) -> Result<Vec<(u32, Vec<Context>)>> {
    let wanted: HashSet<u32> = latents.iter().copied().collect();
    let mut best: Vec<(u32, Vec<Context>)> = latents.iter().map(|&l| (l, Vec::new())).collect();
    let device = model.device();
    let hooks = Hooks::capture([hookpoint.within(model.config().num_hidden_layers)?]);
    for ids in texts.iter().filter(|t| !t.is_empty()) {
        let input = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, ids.len()]),
            &device,
        );
        let out = model.forward(ForwardInput::new(input).with_logits(Logits::None), &hooks, None)?;
        let act = out
            .activation(hookpoint)
            .cloned()
            .ok_or_else(|| Error::Input { field: "hookpoint", message: format!("{hookpoint} was not captured") })?;
        let [_, s, d] = act.dims();
        let active = active_latents(sae, act.reshape([s, d]))?;
        for (pos, row) in active.iter().enumerate() {
            for &(l, a) in row.iter().filter(|(l, a)| wanted.contains(l) && *a > 0.0) {
                let Some((_, list)) = best.iter_mut().find(|(x, _)| *x == l) else { continue };
                if list.len() == top && list.last().is_some_and(|c| c.activation >= a) {
                    continue;
                }
                let span = pos.saturating_sub(window)..(pos + 1 + window).min(ids.len());
                let tokens = span
                    .map(|p| {
                        let at = active[p].iter().find(|(x, _)| *x == l).map_or(0.0, |(_, a)| *a);
                        (decode(&ids[p..=p]), at)
                    })
                    .collect();
                list.push(Context {
                    activation: a,
                    before: decode(&ids[pos.saturating_sub(window)..pos]),
                    token: decode(&ids[pos..=pos]),
                    after: decode(&ids[pos + 1..(pos + 1 + window).min(ids.len())]),
                    tokens,
                });
                list.sort_by(|a, b| b.activation.total_cmp(&a.activation));
                list.truncate(top);
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_latents_on_both_markers_and_nowhere_else() {
        // Positions: 0 text, 1 <think>, 2 text, 3 </think>, 4 <think>, 5 </think>.
        let active: ActiveLatents = vec![
            vec![(9, 1.0)],
            vec![(1, 0.5), (2, 0.7), (3, 0.2), (9, 0.1)],
            vec![(2, 0.3)],
            vec![(1, 0.4), (2, 0.9), (4, 1.0)],
            vec![(5, 1.0)],
            vec![(5, 2.0), (3, 0.05)],
        ];
        // 1: both markers, nowhere else → yes. 2: also at position 2 → no. 3: <think> and
        // </think> (different occurrences) → yes at threshold 0, not at 0.1. 4: only </think>.
        // 5: second <think> and second </think> → yes. 9: also at text position 0 → no.
        assert_eq!(reasoning_latents(&active, &[1, 4], &[3, 5], 0.0), vec![1, 3, 5]);
        assert_eq!(reasoning_latents(&active, &[1, 4], &[3, 5], 0.1), vec![1, 5]);
        assert_eq!(positions(&[7, 4, 7, 5], 7), vec![0, 2]);
    }

    #[test]
    fn decoder_neighbours_rank_by_cosine_and_leave_the_latent_out() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let mut sae = SparseCoder::<B>::random(resa_sae::SaeConfig::new(2, 4, 1), 0, &device).expect("sae");
        // Directions (1, 0), (2, 0.2), (0, 3), (−1, 0): lengths differ, cosines do not care.
        sae.w_dec =
            Tensor::from_data(TensorData::new(vec![1.0f32, 0.0, 2.0, 0.2, 0.0, 3.0, -1.0, 0.0], [4, 2]), &device);
        let got = decoder_neighbours(&sae, &[0, 3], 2).expect("neighbours");
        assert_eq!(
            got.iter().map(|r| r.iter().map(|(l, _)| *l).collect::<Vec<_>>()).collect::<Vec<_>>(),
            [[1, 2], [2, 1]]
        );
        assert!((got[0][0].1 - 2.0 / 4.04f32.sqrt()).abs() < 1e-6, "{got:?}");
        assert!(decoder_neighbours(&sae, &[4], 2).is_err());
        assert!(decoder_neighbours(&sae, &[], 2).expect("none").is_empty());
    }
}
