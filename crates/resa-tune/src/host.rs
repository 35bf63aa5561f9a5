//! The Stage II KL on the host, for the CPU backends (flex, ndarray).
//!
//! As tensor operations the loss is a dozen passes over `[positions, vocab]` logits — two
//! log-softmaxes and a softmax as burn decomposes them (maximum, subtraction, `exp`, sum,
//! logarithm), the product, the sum, and as many again in the backward of the student's
//! log-softmax — each on one thread. [`kl_rows`] computes the KL and its gradient with
//! respect to the student's logits in one pass per row, rows on all threads; the callers in
//! [`crate::stage2`] hand that gradient to autodiff through a surrogate, so the adapters'
//! gradients are those of the tensor path (`cargo test -p resa-tune --lib host` holds the
//! two equal). GPUs keep the tensor path.

use rayon::prelude::*;

/// For each row of `[rows, vocab]` teacher and student logits `t`, `s`:
/// `KL = Σ_v p_t (log p_t − log p_s)` with `p = softmax`, and the gradient of `scale · KL`
/// with respect to `s`, `scale · (p_s − p_t)`.
///
/// Returns the sum of the rows' KL (each row accumulated in f64, rows added in order, so
/// the value does not depend on the number of threads) and the gradient, `[rows, vocab]`.
/// The log-softmax is burn's: `(x − max) − ln Σ exp(x − max)`.
///
/// # Panics
/// When the slices differ in length or `vocab` does not divide it (callers pass tensors of
/// one shape).
pub fn kl_rows(teacher: &[f32], student: &[f32], vocab: usize, scale: f32) -> (f64, Vec<f32>) {
    assert_eq!(teacher.len(), student.len(), "teacher and student logits differ in length");
    assert!(vocab > 0 && teacher.len() % vocab == 0, "logits are not whole rows of {vocab}");
    let mut grad = vec![0.0f32; teacher.len()];
    let per_row: Vec<f64> = grad
        .par_chunks_mut(vocab)
        .zip(teacher.par_chunks(vocab))
        .zip(student.par_chunks(vocab))
        .map(|((g, t), s)| kl_row(t, s, g, scale))
        .collect();
    (per_row.iter().sum(), grad)
}

/// One row of [`kl_rows`]; writes the gradient into `g`.
fn kl_row(t: &[f32], s: &[f32], g: &mut [f32], scale: f32) -> f64 {
    let max = |x: &[f32]| x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mt, ms) = (max(t), max(s));
    // exp(t − max) into `g`, exp(s − max) into `es`, with their sums.
    let mut zt = 0.0f64;
    for (gi, &ti) in g.iter_mut().zip(t) {
        *gi = (ti - mt).exp();
        zt += f64::from(*gi);
    }
    let es: Vec<f32> = s.iter().map(|&si| (si - ms).exp()).collect();
    let zs: f64 = es.iter().map(|&e| f64::from(e)).sum();
    let (lzt, lzs) = (zt.ln() as f32, zs.ln() as f32);
    let (izt, izs) = ((1.0 / zt) as f32, (1.0 / zs) as f32);
    let mut kl = 0.0f64;
    for ((gi, &ei), (&ti, &si)) in g.iter_mut().zip(&es).zip(t.iter().zip(s)) {
        let pt = *gi * izt;
        let ps = ei * izs;
        let lpt = (ti - mt) - lzt;
        let lps = (si - ms) - lzs;
        kl += f64::from(pt * (lpt - lps));
        *gi = (ps - pt) * scale;
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KL and gradient of one row by the definition, in f64.
    fn reference(t: &[f32], s: &[f32]) -> (f64, Vec<f64>) {
        let softmax = |x: &[f32]| {
            let m = x.iter().map(|&v| f64::from(v)).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = x.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            x.iter().map(|&v| (f64::from(v) - m).exp() / z).collect::<Vec<_>>()
        };
        let (pt, ps) = (softmax(t), softmax(s));
        let kl = pt.iter().zip(&ps).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p.ln() - q.ln())).sum();
        (kl, ps.iter().zip(&pt).map(|(q, p)| q - p).collect())
    }

    #[test]
    fn kl_rows_matches_the_definition_on_every_row() {
        let vocab = 37;
        // Rows of ordinary logits, one far from zero, one with a huge range (probabilities
        // that underflow), and identical teacher and student (KL 0).
        let mut t = Vec::new();
        let mut s = Vec::new();
        for r in 0..4 {
            for v in 0..vocab {
                let x = ((r * 31 + v * 17) % 23) as f32 / 7.0 - 1.5;
                let y = ((r * 13 + v * 29) % 19) as f32 / 5.0 - 2.0;
                let (a, b) = match r {
                    0 => (x, y),
                    1 => (x + 1000.0, y - 500.0),
                    2 => (x * 60.0, y * 40.0),
                    _ => (x, x),
                };
                t.push(a);
                s.push(b);
            }
        }
        let (kl, g) = kl_rows(&t, &s, vocab, 0.5);
        let mut want_kl = 0.0;
        for r in 0..4 {
            let row = r * vocab..(r + 1) * vocab;
            let (k, grad) = reference(&t[row.clone()], &s[row.clone()]);
            want_kl += k;
            for (got, want) in g[row].iter().zip(&grad) {
                assert!((f64::from(*got) - 0.5 * want).abs() < 1e-6, "row {r}: gradient {got} against {}", 0.5 * want);
            }
        }
        assert!((kl - want_kl).abs() < 1e-5 * want_kl.abs().max(1.0), "KL {kl} against {want_kl}");
    }

    #[test]
    fn kl_rows_does_not_depend_on_the_thread_count() {
        let vocab = 1000;
        let t: Vec<f32> = (0..64 * vocab).map(|i| ((i * 7919) % 1013) as f32 / 100.0).collect();
        let s: Vec<f32> = (0..64 * vocab).map(|i| ((i * 104_729) % 997) as f32 / 90.0).collect();
        let one =
            rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| kl_rows(&t, &s, vocab, 1.0));
        let four =
            rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap().install(|| kl_rows(&t, &s, vocab, 1.0));
        assert_eq!(one.0.to_bits(), four.0.to_bits());
        assert_eq!(one.1, four.1);
    }
}
