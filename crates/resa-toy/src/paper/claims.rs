//! The paper's claims as paired comparisons of one seed's rows, and their summary over the
//! seeds. The decision rules are fixed in `docs/toy-worlds.md`.

use std::collections::HashMap;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::ToyRow;
use crate::compare::{PerProblem, paired_scores, per_problem};
use crate::error::Result;

/// One of the paper's claims tested at toy scale on one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// A stable id (`rl_beats_base`, `sae_beats_base`, …).
    pub id: String,
    /// The seed of the rows compared.
    pub seed: u64,
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
    /// For the recovery claim: the share of the RL source's gain that SAE-Tuning recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

/// A ratio with its 95 % percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// The ratio on all problems.
    pub estimate: f64,
    /// 2.5th percentile of the resampled ratios.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
    /// Bootstrap resamples of the problems that have a ratio (the toy Tina gains something
    /// on them), of the 2,000 drawn.
    pub resamples: usize,
}

/// One claim over the seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimSummary {
    /// The claim's id.
    pub id: String,
    /// The claim as the paper makes it.
    pub claim: String,
    /// Seeds it was tested on.
    pub seeds: usize,
    /// Seeds it holds in.
    pub holds_in: usize,
    /// Whether it holds in a majority of the seeds.
    pub holds: bool,
    /// Mean paired difference over the seeds, points.
    pub mean_diff: f64,
    /// Standard deviation of the paired difference over the seeds (0 for one seed).
    pub sd_diff: f64,
}

/// How two rows are compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Test {
    /// a − b > 2 s.e.
    Above,
    /// |a − b| ≤ 2 s.e.
    Matches,
}

/// Bootstrap resamples of the recovery ratio's interval.
const RESAMPLES: usize = 2000;

/// A row with its per-problem scores.
type Scored<'a> = (&'a ToyRow, &'a PerProblem);

/// The claims of one seed's rows.
pub(super) fn seed_claims(rows: &[ToyRow], seed: u64) -> Result<Vec<Claim>> {
    // Each evaluation's completions are read once.
    let scores: Vec<PerProblem> =
        rows.iter().map(|r| per_problem(&r.dir.join("completions.jsonl"))).collect::<Result<_>>()?;
    let row = |id: &str| rows.iter().zip(&scores).find(|(r, _)| r.id == id);
    let mut out = Vec::new();
    let mut claim = |id: &str, text: &str, a: Option<Scored<'_>>, b: Option<Scored<'_>>, test: Test| -> Result<()> {
        let (Some((a, sa)), Some((b, sb))) = (a, b) else { return Ok(()) };
        let p = paired_scores(sb, sa);
        let holds = match test {
            Test::Above => p.above(2.0),
            Test::Matches => p.diff_pct.abs() <= 2.0 * p.stderr_pct,
        };
        let test = format!(
            "{} {} {} (paired over {} problems, {})",
            a.name,
            if test == Test::Matches { "≈" } else { ">" },
            b.name,
            p.problems,
            if test == Test::Matches { "|difference| ≤ 2 s.e." } else { "difference > 2 s.e." }
        );
        out.push(Claim {
            id: id.into(),
            seed,
            claim: text.into(),
            test,
            holds,
            diff: p.diff_pct,
            stderr: p.stderr_pct,
            ratio: None,
        });
        Ok(())
    };
    let (base, tina, sae) = (row("base"), row("rl-source"), row("sae-tuning"));
    use Test::{Above, Matches};
    claim("rl_beats_base", "RL on CoT-free data (Tina) improves on the base model", tina, base, Above)?;
    claim("sae_beats_base", "SAE-Tuning with the RL source's SAE improves on the base model", sae, base, Above)?;
    claim(
        "sae_matches_rl",
        "SAE-Tuning recovers the RL source's performance (Resa-STILL-v1 ≈ Tina-STILL)",
        sae,
        tina,
        Matches,
    )?;
    claim("sae_beats_cot_free_sft", "SAE-Tuning beats CoT-free SFT on the same data", sae, row("cot-free-sft"), Above)?;
    claim("sae_beats_cot_sft", "SAE-Tuning beats CoT-based SFT", sae, row("cot-sft"), Above)?;
    claim(
        "finetuned_beats_pretrained_sae",
        "A fine-tuned SAE beats a pretrained one (Resa-STILL-v1 > v2)",
        sae,
        row("sae-pretrained"),
        Above,
    )?;
    claim(
        "scratch_matches_finetuned_sae",
        "An SAE trained from scratch does about as well as a fine-tuned one (v3 ≈ v1)",
        row("sae-scratch"),
        sae,
        Matches,
    )?;
    claim(
        "rl_source_beats_base_source",
        "The RL-trained source beats the untrained one as the SAE's source (Tina-2000-step > Tina-0-step)",
        sae,
        row("source-0"),
        Above,
    )?;
    claim(
        "base_source_finetuned_beats_base",
        "SAE-Tuning with the base itself as source and a fine-tuned SAE improves on the base (Resa-STILL-v4)",
        row("source-0"),
        base,
        Above,
    )?;
    claim(
        "base_source_scratch_beats_base",
        "SAE-Tuning with the base itself as source and an SAE from scratch improves on the base (Resa-STILL-v5)",
        row("source-0-scratch"),
        base,
        Above,
    )?;
    claim(
        "adapter_transfers",
        "An SAE-Tuning adapter works on another model of the family without training there (reasoning as an adapter)",
        row("sibling-adapter"),
        base,
        Above,
    )?;
    for (r, s) in rows.iter().zip(&scores).filter(|(r, _)| r.role == "layer") {
        claim(
            &format!("layer_beats_base_{}", r.id),
            &format!("SAE-Tuning improves on the base at every layer ({})", r.name),
            Some((r, s)),
            base,
            Above,
        )?;
    }
    if let (Some(base), Some(tina), Some(sae)) = (base, tina, sae) {
        out.push(recovery(base, tina, sae, seed));
    }
    Ok(out)
}

/// "SAE-Tuning recovers ≥ 97 % of the RL source's gain": (SAE-Tuning − base) / (toy Tina −
/// base) over the problems all three answered, with a percentile-bootstrap interval. It
/// holds when the toy Tina beats the base (> 2 s.e.), the interval's upper end reaches 97 %
/// and its lower end is above 0. `diff` / `stderr` are SAE-Tuning − toy Tina.
fn recovery((_, b): Scored<'_>, (tina, t): Scored<'_>, (sae, s): Scored<'_>, seed: u64) -> Claim {
    let mut keys: Vec<&(String, String)> = b.keys().filter(|k| t.contains_key(*k) && s.contains_key(*k)).collect();
    keys.sort_unstable();
    let gains: Vec<(f64, f64)> = keys.iter().map(|k| (t[*k] - b[*k], s[*k] - b[*k])).collect();
    let ratio_of = |idx: &mut dyn Iterator<Item = usize>| -> f64 {
        let (mut rl, mut sae) = (0.0, 0.0);
        for i in idx {
            rl += gains[i].0;
            sae += gains[i].1;
        }
        sae / rl
    };
    let n = gains.len();
    let estimate = ratio_of(&mut (0..n));
    let mut rng = StdRng::seed_from_u64(seed ^ 0x72_6174_696f);
    let mut samples: Vec<f64> = (0..RESAMPLES)
        .map(|_| ratio_of(&mut (0..n).map(|_| rng.random_range(0..n.max(1)))))
        .filter(|r| r.is_finite())
        .collect();
    samples.sort_unstable_by(f64::total_cmp);
    let pick = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    // Resamples where the toy Tina gains nothing have no ratio; they are left out (so are
    // all of them, and the claim does not hold, when it gains nothing on all problems).
    let ratio = (estimate.is_finite() && !samples.is_empty()).then(|| Ratio {
        estimate,
        low: pick(0.025),
        high: pick(0.975),
        resamples: samples.len(),
    });
    let rl = paired_scores(b, t);
    let vs_rl = paired_scores(t, s);
    let holds = rl.above(2.0) && ratio.is_some_and(|r| r.high >= 0.97 && r.low > 0.0);
    let shown = ratio.map_or("undefined (the toy Tina gains nothing)".to_string(), |r| {
        format!("{:.1} % [{:.1}, {:.1}]", 100.0 * r.estimate, 100.0 * r.low, 100.0 * r.high)
    });
    Claim {
        id: "sae_recovers_rl_gain".into(),
        seed,
        claim: "SAE-Tuning recovers ≥ 97 % of the RL source's gain".into(),
        test: format!(
            "({} − base) / ({} − base) = {shown} (95 % bootstrap over {} problems, {} resamples); holds when the \
             toy Tina beats the base, the upper end reaches 97 % and the lower end is above 0",
            sae.name, tina.name, n, RESAMPLES
        ),
        holds,
        diff: vs_rl.diff_pct,
        stderr: vs_rl.stderr_pct,
        ratio,
    }
}

/// Each claim (in the order first seen) over the seeds it was tested on.
pub(super) fn summarize(claims: &[Claim]) -> Vec<ClaimSummary> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_id: HashMap<&str, Vec<&Claim>> = HashMap::new();
    for c in claims {
        if !by_id.contains_key(c.id.as_str()) {
            order.push(&c.id);
        }
        by_id.entry(&c.id).or_default().push(c);
    }
    order
        .into_iter()
        .map(|id| {
            let cs = &by_id[id];
            let n = cs.len();
            let holds_in = cs.iter().filter(|c| c.holds).count();
            let mean = cs.iter().map(|c| c.diff).sum::<f64>() / n as f64;
            let sd = if n > 1 {
                (cs.iter().map(|c| (c.diff - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            ClaimSummary {
                id: id.to_string(),
                claim: cs[0].claim.clone(),
                seeds: n,
                holds_in,
                holds: 2 * holds_in > n,
                mean_diff: mean,
                sd_diff: sd,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn claim(id: &str, seed: u64, holds: bool, diff: f64) -> Claim {
        Claim {
            id: id.into(),
            seed,
            claim: format!("claim {id}"),
            test: String::new(),
            holds,
            diff,
            stderr: 1.0,
            ratio: None,
        }
    }

    #[test]
    fn a_claim_holds_over_the_seeds_only_in_a_majority_of_them() {
        let claims = vec![
            claim("a", 0, true, 10.0),
            claim("b", 0, true, 1.0),
            claim("a", 1, true, 20.0),
            claim("b", 1, false, 2.0),
            claim("a", 2, false, 30.0),
            claim("b", 2, false, 3.0),
        ];
        let s = summarize(&claims);
        assert_eq!(s.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((s[0].seeds, s[0].holds_in, s[0].holds), (3, 2, true));
        assert_eq!((s[1].seeds, s[1].holds_in, s[1].holds), (3, 1, false), "one seed of three is not holding");
        assert!((s[0].mean_diff - 20.0).abs() < 1e-12 && (s[0].sd_diff - 10.0).abs() < 1e-12, "{:?}", s[0]);
        let two = summarize(&claims[..4]);
        assert!(!two[1].holds, "one seed of two is not a majority");
        assert!(summarize(&claims[..1])[0].holds, "one seed of one");
    }

    /// A row whose completions file has, per problem, `right[i]` of 4 samples right.
    fn row(dir: &Path, id: &str, right: &[usize]) -> ToyRow {
        let dir = dir.join(id);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut lines = String::new();
        for (i, &r) in right.iter().enumerate() {
            for s in 0..4 {
                let rec = resa_eval::CompletionRecord {
                    bench: "toy".into(),
                    id: format!("p{i}"),
                    sample: s,
                    seed: s as u64,
                    prompt: String::new(),
                    completion: String::new(),
                    gold: "1".into(),
                    extracted: String::new(),
                    correct: s < r,
                    new_tokens: 1,
                    finish: "stop".into(),
                };
                lines.push_str(&serde_json::to_string(&rec).expect("json"));
                lines.push('\n');
            }
        }
        std::fs::write(dir.join("completions.jsonl"), lines).expect("write");
        ToyRow {
            seed: 0,
            id: id.into(),
            table: "3".into(),
            name: id.into(),
            role: id.into(),
            pass_at_1: 0.0,
            stderr: 0.0,
            n_problems: right.len(),
            n_samples: 4,
            reasoned_pct: 0.0,
            dir,
        }
    }

    #[test]
    fn the_recovery_ratio_is_the_share_of_the_rl_gain_with_an_interval_around_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        // 40 problems: the base gets 1 of 4 right, the toy Tina 4 of 4; SAE-Tuning recovers
        // all of it on 30 problems and none on 10: 75 % of the gain.
        let n = 40;
        let base = row(tmp.path(), "base", &vec![1; n]);
        let tina = row(tmp.path(), "tina", &vec![4; n]);
        let sae: Vec<usize> = (0..n).map(|i| if i < 30 { 4 } else { 1 }).collect();
        let sae = row(tmp.path(), "sae", &sae);
        let score = |r: &ToyRow| per_problem(&r.dir.join("completions.jsonl")).expect("scores");
        let (b, t, s) = (score(&base), score(&tina), score(&sae));
        let c = recovery((&base, &b), (&tina, &t), (&sae, &s), 0);
        let r = c.ratio.expect("a ratio");
        assert!((r.estimate - 0.75).abs() < 1e-12, "{r:?}");
        assert!(r.low < 0.75 && r.high > 0.75 && r.low > 0.5 && r.high < 0.95, "{r:?}");
        assert_eq!(r.resamples, 2000);
        assert!(!c.holds, "97 % lies above the interval");
        assert!((c.diff + 0.25 * 75.0).abs() < 1e-9, "SAE-Tuning − toy Tina: {}", c.diff);
        // All of the gain: holds.
        let c = recovery((&base, &b), (&tina, &t), (&tina, &t), 0);
        assert!(c.holds && (c.ratio.expect("ratio").estimate - 1.0).abs() < 1e-12, "{c:?}");
        // No gain at all: no ratio, does not hold.
        let c = recovery((&base, &b), (&base, &b), (&sae, &s), 0);
        assert!(c.ratio.is_none() && !c.holds, "{c:?}");
    }
}
