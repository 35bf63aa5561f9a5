//! A one-dimensional Gaussian mixture fitted by EM to weighted points — layer indices
//! weighted by a per-layer quantity (reasoning-feature counts, or benchmark scores) — and
//! the hookpoints it suggests.
//!
//! A point with weight w counts as w copies of itself, so the fit equals scikit-learn's
//! `GaussianMixture` on the expanded sample (checked by `scripts/reference/gmm_reference.py`).
//! As there: k-means initialisation (here k-means++ seeded, `n_init` restarts, the best
//! log-likelihood kept), `reg_covar` added to every variance, and convergence when the
//! mean log-likelihood per unit weight changes by less than `tol`.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Options of [`fit_gmm`] (scikit-learn's defaults, three components).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmmOptions {
    /// Components.
    pub components: usize,
    /// Seed of the initialisations.
    pub seed: u64,
    /// Restarts; the best log-likelihood wins.
    pub n_init: usize,
    /// EM iterations per restart.
    pub max_iter: usize,
    /// Convergence threshold on the mean log-likelihood.
    pub tol: f64,
    /// Added to each variance.
    pub reg_covar: f64,
}

impl Default for GmmOptions {
    fn default() -> Self {
        GmmOptions { components: 3, seed: 0, n_init: 10, max_iter: 100, tol: 1e-3, reg_covar: 1e-6 }
    }
}

/// One fitted component.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Mean (in layer units).
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Mixing weight (sums to 1 over components).
    pub weight: f64,
}

/// A fitted mixture, components sorted by mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gmm {
    /// The components, by increasing mean.
    pub components: Vec<Component>,
    /// Total weighted log-likelihood.
    pub log_likelihood: f64,
    /// Mean log-likelihood per unit weight (scikit-learn's `lower_bound_`).
    pub mean_log_likelihood: f64,
    /// EM iterations of the winning restart.
    pub iterations: usize,
    /// Whether that restart converged within `max_iter`.
    pub converged: bool,
}

impl Gmm {
    /// The mixture density at `x`.
    pub fn pdf(&self, x: f64) -> f64 {
        self.components.iter().map(|c| c.weight * normal_pdf(x, c.mean, c.std * c.std)).sum()
    }
}

fn normal_pdf(x: f64, mean: f64, var: f64) -> f64 {
    (-(x - mean).powi(2) / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var).sqrt()
}

fn log_normal(x: f64, mean: f64, var: f64) -> f64 {
    -0.5 * ((2.0 * std::f64::consts::PI * var).ln() + (x - mean).powi(2) / var)
}

/// Entropy (nats) of the weights normalised to a distribution over the points.
pub fn entropy(weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return 0.0;
    }
    // `+ 0.0` turns the -0 of a single point into 0.
    weights.iter().filter(|w| **w > 0.0).map(|w| w / total).map(|p| -p * p.ln()).sum::<f64>() + 0.0
}

/// Fits a mixture to points `x` with non-negative weights `w`.
pub fn fit_gmm(x: &[f64], w: &[f64], opts: &GmmOptions) -> Result<Gmm> {
    if x.len() != w.len() {
        return Err(Error::Input { field: "weights", message: format!("{} points but {} weights", x.len(), w.len()) });
    }
    if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::Input { field: "weights", message: format!("weights must be finite and ≥ 0, got {bad}") });
    }
    let pts: Vec<(f64, f64)> = x.iter().copied().zip(w.iter().copied()).filter(|(_, w)| *w > 0.0).collect();
    let k = opts.components;
    if k == 0 || opts.n_init == 0 {
        return Err(Error::Input { field: "components", message: "components and n_init must be at least 1".into() });
    }
    if pts.len() < k {
        return Err(Error::Input {
            field: "weights",
            message: format!("{} points with positive weight cannot carry {k} components", pts.len()),
        });
    }
    let mut best: Option<Gmm> = None;
    for init in 0..opts.n_init {
        let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(init as u64));
        let fit = em(&pts, kmeans_init(&pts, k, &mut rng), opts);
        if best.as_ref().is_none_or(|b| fit.log_likelihood > b.log_likelihood) {
            best = Some(fit);
        }
    }
    let mut gmm = best.ok_or_else(|| Error::Input { field: "n_init", message: "no restart ran".into() })?;
    gmm.components.sort_by(|a, b| a.mean.total_cmp(&b.mean));
    Ok(gmm)
}

/// Weighted k-means++ seeding then Lloyd iterations; the hard assignment gives the initial
/// components (as scikit-learn's `init_params="kmeans"`).
fn kmeans_init(pts: &[(f64, f64)], k: usize, rng: &mut StdRng) -> Vec<Component> {
    let total: f64 = pts.iter().map(|p| p.1).sum();
    let pick = |rng: &mut StdRng, scores: &[f64]| {
        let sum: f64 = scores.iter().sum();
        if sum <= 0.0 {
            return rng.random_range(0..scores.len());
        }
        let mut u = rng.random::<f64>() * sum;
        for (i, s) in scores.iter().enumerate() {
            u -= s;
            if u <= 0.0 {
                return i;
            }
        }
        scores.len() - 1
    };
    let mut centers = vec![pts[pick(rng, &pts.iter().map(|p| p.1).collect::<Vec<_>>())].0];
    while centers.len() < k {
        let d: Vec<f64> = pts
            .iter()
            .map(|(x, w)| w * centers.iter().map(|c| (x - c).powi(2)).fold(f64::INFINITY, f64::min))
            .collect();
        centers.push(pts[pick(rng, &d)].0);
    }
    let assign = |centers: &[f64]| -> Vec<usize> {
        pts.iter()
            .map(|(x, _)| {
                (0..centers.len())
                    .min_by(|&a, &b| (x - centers[a]).abs().total_cmp(&(x - centers[b]).abs()))
                    .unwrap_or(0)
            })
            .collect()
    };
    let mut labels = assign(&centers);
    for _ in 0..300 {
        for (c, center) in centers.iter_mut().enumerate() {
            let (sw, swx) = pts
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == c)
                .fold((0.0, 0.0), |(sw, swx), ((x, w), _)| (sw + w, swx + w * x));
            if sw > 0.0 {
                *center = swx / sw;
            }
        }
        let next = assign(&centers);
        if next == labels {
            break;
        }
        labels = next;
    }
    (0..k)
        .map(|c| {
            let mine: Vec<(f64, f64)> = pts.iter().zip(&labels).filter(|(_, l)| **l == c).map(|(p, _)| *p).collect();
            let sw: f64 = mine.iter().map(|p| p.1).sum();
            if sw <= 0.0 {
                return Component { mean: centers[c], std: 1.0, weight: 1e-6 };
            }
            let mean = mine.iter().map(|(x, w)| w * x).sum::<f64>() / sw;
            let var = mine.iter().map(|(x, w)| w * (x - mean).powi(2)).sum::<f64>() / sw;
            Component { mean, std: var.sqrt(), weight: sw / total }
        })
        .collect()
}

fn em(pts: &[(f64, f64)], init: Vec<Component>, opts: &GmmOptions) -> Gmm {
    let total: f64 = pts.iter().map(|p| p.1).sum();
    let k = init.len();
    let mut comps = init;
    for c in &mut comps {
        c.std = (c.std * c.std + opts.reg_covar).sqrt();
    }
    let mut resp = vec![vec![0.0; k]; pts.len()];
    let mut prev = f64::NEG_INFINITY;
    let mut converged = false;
    let mut iterations = 0;
    let mut ll = f64::NEG_INFINITY;
    for it in 1..=opts.max_iter {
        iterations = it;
        // E step (log-sum-exp per point).
        ll = 0.0;
        for (i, (x, w)) in pts.iter().enumerate() {
            let logs: Vec<f64> =
                comps.iter().map(|c| c.weight.max(1e-300).ln() + log_normal(*x, c.mean, c.std * c.std)).collect();
            let m = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logs.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            for (r, l) in resp[i].iter_mut().zip(&logs) {
                *r = (l - lse).exp();
            }
            ll += w * lse;
        }
        // M step.
        for (c, comp) in comps.iter_mut().enumerate() {
            let nk: f64 = pts.iter().zip(&resp).map(|((_, w), r)| w * r[c]).sum::<f64>() + 10.0 * f64::EPSILON;
            let mean = pts.iter().zip(&resp).map(|((x, w), r)| w * r[c] * x).sum::<f64>() / nk;
            let var = pts.iter().zip(&resp).map(|((x, w), r)| w * r[c] * (x - mean).powi(2)).sum::<f64>() / nk
                + opts.reg_covar;
            *comp = Component { mean, std: var.sqrt(), weight: nk / total };
        }
        // As scikit-learn: the M step follows every E step, then the E step's bound decides.
        let mean_ll = ll / total;
        if (mean_ll - prev).abs() < opts.tol {
            converged = true;
            break;
        }
        prev = mean_ll;
    }
    Gmm { components: comps, log_likelihood: ll, mean_log_likelihood: ll / total, iterations, converged }
}

/// A suggested hookpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The hookpoint, e.g. `layers.12` (serialised as its name).
    pub hookpoint: resa_qwen2::Hookpoint,
    /// Why.
    pub reason: String,
}

/// Proposes hookpoints from a mixture fitted over layer indices: for each component, by
/// decreasing weight, the available layer nearest its mean — the paper's practice of placing
/// the SAE where reasoning features concentrate. `layers` are the layer indices that have SAEs.
pub fn propose(gmm: &Gmm, layers: &[usize], quantity: &str) -> Vec<Proposal> {
    let mut comps: Vec<&Component> = gmm.components.iter().collect();
    comps.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    let mut out: Vec<Proposal> = Vec::new();
    for (rank, c) in comps.iter().enumerate() {
        let Some(&layer) =
            layers.iter().min_by(|a, b| (**a as f64 - c.mean).abs().total_cmp(&(**b as f64 - c.mean).abs()))
        else {
            break;
        };
        let hookpoint = resa_qwen2::Hookpoint::Residual(layer);
        if out.iter().any(|p| p.hookpoint == hookpoint) {
            continue;
        }
        out.push(Proposal {
            hookpoint,
            reason: format!(
                "{} component: {:.0}% of the {quantity} mass, centred at layer {:.1} (sd {:.1}); layers.{layer} is the nearest layer with an SAE",
                ["largest", "second", "third", "fourth", "fifth"].get(rank).copied().unwrap_or("next"),
                100.0 * c.weight,
                c.mean,
                c.std
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_clusters_are_found() {
        // Three clumps of weight at layers ~2, ~10, ~20.
        let x: Vec<f64> = (0..24).map(f64::from).collect();
        let w: Vec<f64> = x
            .iter()
            .map(|l| {
                30.0 * (-(l - 2.0).powi(2) / 2.0).exp()
                    + 20.0 * (-(l - 10.0).powi(2) / 2.0).exp()
                    + 10.0 * (-(l - 20.0).powi(2) / 2.0).exp()
            })
            .map(f64::round)
            .collect();
        let g = fit_gmm(&x, &w, &GmmOptions::default()).expect("fits");
        let means: Vec<f64> = g.components.iter().map(|c| c.mean).collect();
        for (m, want) in means.iter().zip([2.0, 10.0, 20.0]) {
            assert!((m - want).abs() < 0.3, "{means:?}");
        }
        let weights: f64 = g.components.iter().map(|c| c.weight).sum();
        assert!((weights - 1.0).abs() < 1e-9);
        assert!(g.components[0].weight > g.components[1].weight && g.components[1].weight > g.components[2].weight);
        let p = propose(&g, &(0..24).collect::<Vec<_>>(), "count");
        assert_eq!(p[0].hookpoint.to_string(), "layers.2");
        assert_eq!(p.len(), 3);
        assert_eq!(fit_gmm(&x, &w, &GmmOptions::default()).expect("fits"), g, "deterministic");
    }

    #[test]
    fn entropy_and_errors() {
        assert!((entropy(&[1.0, 1.0, 1.0, 1.0]) - 4f64.ln()).abs() < 1e-12);
        assert_eq!(entropy(&[0.0, 5.0]), 0.0);
        assert!(fit_gmm(&[1.0, 2.0], &[1.0, 1.0], &GmmOptions::default()).is_err());
        assert!(fit_gmm(&[1.0, 2.0, 3.0], &[1.0, -1.0, 1.0], &GmmOptions::default()).is_err());
    }
}
