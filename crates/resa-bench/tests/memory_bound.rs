//! The Stage II memory bound (`resa_tune::memory`) against the peaks measured for the bench
//! workloads on this project's CPU runs (docs/performance.md), on the bench's own shapes:
//! the bound is below every measured peak (it is a lower bound) and not far below it (it is
//! not vacuous), and the parts move as the shapes say.

use resa_bench::{r1_distill_15b, stage2_model, stage2_vocab_model};
use resa_lora::LoraConfig;
use resa_qwen2::Qwen2Config;
use resa_tune::{Head, Stage2Shape, stage2_memory};

const MIB: f64 = (1u64 << 20) as f64;

/// (case, shape, measured peak RSS in MiB: `resa bench --only NAME --repeats 1`, release,
/// this 2-core machine).
fn measured() -> Vec<(&'static str, Stage2Shape, f64)> {
    let shape = |model: Qwen2Config, seq, dtype_bytes, sae, student_from, head| Stage2Shape {
        model,
        lora: LoraConfig::reference(),
        seq_len: seq,
        micro_batch: 1,
        dtype_bytes,
        sae: Some(sae),
        student_from,
        head,
        recompute: false,
    };
    vec![
        // `--size 1.5b --dtype bf16 --only stage2_step`: 65,536-latent SAE at layers.12.
        ("1.5b bf16", shape(r1_distill_15b(), 2048, 2, (1536, 65_536), 13, None), 18_140.0),
        // `--only stage2_step_recompute`: the student's layers recomputed.
        (
            "1.5b bf16 recompute",
            Stage2Shape { recompute: true, ..shape(r1_distill_15b(), 2048, 2, (1536, 65_536), 13, None) },
            7_871.0,
        ),
        ("stage2_step", shape(stage2_model(), 512, 4, (512, 8192), 3, None), 469.0),
        ("stage2_step_plain", shape(stage2_model(), 512, 4, (512, 8192), 0, None), 647.0),
        ("stage2_step_vocab", shape(stage2_vocab_model(), 2048, 4, (256, 4096), 1, None), VOCAB_CHUNKED),
        ("stage2_step_vocab_full", shape(stage2_vocab_model(), 2048, 4, (256, 4096), 1, Some(Head::Full)), VOCAB_FULL),
    ]
}

const VOCAB_CHUNKED: f64 = 970.0;
const VOCAB_FULL: f64 = 5531.0;

#[test]
fn the_bound_is_below_every_measured_peak_and_not_vacuous() {
    for (case, shape, peak) in measured() {
        let est = stage2_memory(&shape);
        let bound = est.total() as f64 / MIB;
        eprintln!("{case}: bound {bound:.0} MiB, measured peak {peak:.0} MiB ({:.2}×); {est}", peak / bound);
        assert!(bound <= peak, "{case}: bound {bound:.0} MiB above the measured {peak:.0} MiB");
        assert!(bound >= peak / 6.0, "{case}: bound {bound:.0} MiB is vacuous against {peak:.0} MiB");
    }
}

#[test]
fn the_parts_follow_the_shapes() {
    let (_, base, _) = measured().remove(0);
    let est = stage2_memory(&base);
    // Weights: 1.78B parameters in bf16.
    let params = est.weights as f64 / 2.0;
    assert!((1.7e9..1.85e9).contains(&params), "{params}");
    // The SAE: two 1536 × 65,536 matrices in f32.
    assert!((est.sae as f64 - 2.0 * 1536.0 * 65_536.0 * 4.0).abs() < 1e6, "{}", est.sae);
    // Attention probabilities grow with the square of the context: doubling it more than
    // doubles the activations.
    let long = stage2_memory(&Stage2Shape { seq_len: 4096, ..base.clone() });
    assert!(
        long.activations > 2 * est.activations + est.activations / 2,
        "{} vs {}",
        long.activations,
        est.activations
    );
    // More student layers, more activations; the plain computation keeps all 28.
    let plain = stage2_memory(&Stage2Shape { student_from: 0, ..base.clone() });
    assert!(plain.activations > est.activations);
    // Recomputing the student's layers holds one layer's activations and every layer's
    // input: far less than 15 layers' worth, more than one layer's.
    let recomputed = stage2_memory(&Stage2Shape { recompute: true, ..base.clone() });
    assert!(recomputed.activations < est.activations / 4, "{} vs {}", recomputed.activations, est.activations);
    assert!(recomputed.activations > est.activations / 15);
    assert_eq!(recomputed.weights, est.weights);
    // The SFT baseline has no SAE and one set of logits.
    let sft = stage2_memory(&Stage2Shape { sae: None, ..base.clone() });
    assert_eq!(sft.sae, 0);
    // A larger rank, larger adapter state; no targets, none.
    let mut wide = base.clone();
    wide.lora.r = 256;
    assert!(stage2_memory(&wide).adapters > 7 * est.adapters);
    let mut none = base.clone();
    none.lora = LoraConfig::new(32, 64.0, 0.0, &["not_a_layer"]);
    assert_eq!(stage2_memory(&none).adapters, 0);
    // The message names every part.
    let text = est.to_string();
    for part in ["at least", "weights", "SAE", "adapters", "activations", "logits", "GiB"] {
        assert!(text.contains(part), "{text}");
    }
}
