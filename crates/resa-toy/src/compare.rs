//! How toy models are compared: the toy benchmark's held-out problems, sampled several times
//! each with the same seeds for every model, and the paired difference of two evaluations
//! per problem.

use std::collections::HashMap;
use std::path::Path;

use resa_qwen2::Sampling;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How the toy models are compared: the toy benchmark's held-out problems, several samples
/// each, the same seeds for every model (so the comparison is paired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyEvalConfig {
    /// Held-out problems.
    pub problems: usize,
    /// Samples per problem.
    pub samples: usize,
    /// Token budget of a completion.
    pub max_new_tokens: usize,
    /// Sampling (the paper's evaluation: temperature 0.6, top-p 0.95).
    pub sampling: Sampling,
    /// Seed of the held-out problems (the world's test split).
    #[serde(default)]
    pub problems_seed: u64,
    /// Seed of the samples.
    pub seed: u64,
}

impl Default for ToyEvalConfig {
    fn default() -> Self {
        ToyEvalConfig {
            problems: 200,
            samples: 4,
            max_new_tokens: 96,
            sampling: Sampling::Sample { temperature: 0.6, top_p: 0.95, top_k: None },
            problems_seed: 0,
            seed: 0,
        }
    }
}

impl ToyEvalConfig {
    /// The evaluation settings of [`resa_eval`].
    pub fn eval_config(&self) -> resa_eval::EvalConfig {
        resa_eval::EvalConfig {
            sampling: self.sampling,
            max_new_tokens: self.max_new_tokens,
            samples: self.samples,
            seed: self.seed,
            batch_size: 64,
            ..resa_eval::EvalConfig::default()
        }
    }
}

/// A paired comparison of two evaluations on the same problems and seeds: per problem the
/// difference of the fraction of samples right, its mean and standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Problems both evaluations answered.
    pub problems: usize,
    /// Mean of (b − a), percentage points.
    pub diff_pct: f64,
    /// Its standard error (sample standard deviation of the per-problem differences / √n).
    pub stderr_pct: f64,
}

impl Paired {
    /// Whether b is above a by more than `k` standard errors.
    pub fn above(&self, k: f64) -> bool {
        self.diff_pct > k * self.stderr_pct
    }
}

/// Per problem (benchmark, id), the fraction of its samples that are right.
pub type PerProblem = HashMap<(String, String), f64>;

/// The [`PerProblem`] scores of a completions file (`completions.jsonl` of [`resa_eval`]).
pub fn per_problem(path: &Path) -> Result<PerProblem> {
    let mut m: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for r in resa_eval::read_completions(path)? {
        let e = m.entry((r.bench, r.id)).or_default();
        e.0 += usize::from(r.correct);
        e.1 += 1;
    }
    Ok(m.into_iter().map(|(k, (right, n))| (k, right as f64 / n as f64)).collect())
}

/// The paired difference `b − a` of two completions files (`completions.jsonl` of
/// [`resa_eval`]); problems missing from either are left out.
pub fn paired(a: &Path, b: &Path) -> Result<Paired> {
    Ok(paired_scores(&per_problem(a)?, &per_problem(b)?))
}

/// The paired difference `b − a` of two evaluations' per-problem scores; problems missing
/// from either are left out.
pub fn paired_scores(a: &PerProblem, b: &PerProblem) -> Paired {
    let diffs: Vec<f64> = a.iter().filter_map(|(k, &fa)| Some(100.0 * (b.get(k)? - fa))).collect();
    let n = diffs.len();
    if n == 0 {
        return Paired { problems: 0, diff_pct: 0.0, stderr_pct: 0.0 };
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    Paired { problems: n, diff_pct: mean, stderr_pct: (var / n as f64).sqrt() }
}
