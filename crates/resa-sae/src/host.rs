//! The sparse parts of an SAE training step computed on the host, for the CPU backends
//! (flex, ndarray), where tensors already live in host memory.
//!
//! As tensor operations the k-sparse decoder and the gradients of the selected encoder and
//! decoder rows gather `[n, k, d]` copies of rows (805 MB each at 4096 tokens, k 32,
//! d 1536) and scatter `[n, k, d]` gradients back: a profile of the step on flex spent more
//! than half its time in the kernel, faulting and zeroing the pages of those temporaries.
//! Here every row is read where it lies and every gradient row is accumulated in place, on
//! all threads: rows of the batch in parallel for the decoder and the dot products, latents
//! in parallel (each with the list of the batch rows that selected it) for the gradients.
//! The values are those of the tensor path up to the order of float additions.

use rayon::prelude::*;

/// `out[r] = init[r] + Σ_j coef[r, j] · w[idx[r, j]]` for every row `r` of `idx` `[n, k]`
/// (`w` `[L, d]`, `init` `[n, d]` or none).
pub fn rows_combine(w: &[f32], d: usize, idx: &[i64], coef: &[f32], k: usize, init: Option<&[f32]>) -> Vec<f32> {
    let n = idx.len() / k.max(1);
    let mut out = match init {
        Some(init) => init.to_vec(),
        None => vec![0.0f32; n * d],
    };
    out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
        for j in 0..k {
            let c = coef[r * k + j];
            if c == 0.0 {
                continue;
            }
            let i = idx[r * k + j] as usize;
            axpy(o, c, &w[i * d..(i + 1) * d]);
        }
    });
    out
}

/// `out[r, j] = g[r] · w[idx[r, j]]` (`g` `[n, d]`, `w` `[L, d]`).
pub fn rows_dot(w: &[f32], d: usize, idx: &[i64], g: &[f32], k: usize) -> Vec<f32> {
    let n = idx.len() / k.max(1);
    let mut out = vec![0.0f32; n * k];
    out.par_chunks_mut(k).enumerate().for_each(|(r, o)| {
        let gr = &g[r * d..(r + 1) * d];
        for (j, slot) in o.iter_mut().enumerate() {
            let i = idx[r * k + j] as usize;
            *slot = dot(gr, &w[i * d..(i + 1) * d]);
        }
    });
    out
}

/// One set of contributions to [`scatter_rows`]: row `idx[r, j]` of the result gains
/// `coef[r, j] · src[r]`.
pub struct Scatter<'a> {
    /// `[n, k]` latent indices.
    pub idx: &'a [i64],
    /// `[n, k]` coefficients.
    pub coef: &'a [f32],
    /// Indices per row.
    pub k: usize,
    /// `[n, d]` source rows.
    pub src: &'a [f32],
}

/// `out[i] = Σ_sets Σ_{(r, j): idx[r, j] = i} coef[r, j] · src[r]`, `[l, d]`: the gradient
/// of selected rows, accumulated per latent (latents in parallel, no `[n, k, d]` product).
pub fn scatter_rows(l: usize, d: usize, sets: &[Scatter<'_>]) -> Vec<f32> {
    // Bucket every (set, r, j) by its latent: offsets by counting, then the entries.
    let mut counts = vec![0usize; l + 1];
    for s in sets {
        for &i in s.idx {
            counts[i as usize + 1] += 1;
        }
    }
    for i in 0..l {
        counts[i + 1] += counts[i];
    }
    let offsets = counts;
    let total = offsets[l];
    let mut fill = offsets.clone();
    // (set, flat position r·k + j)
    let mut entries = vec![(0u32, 0u32); total];
    for (si, s) in sets.iter().enumerate() {
        for (p, &i) in s.idx.iter().enumerate() {
            let slot = &mut fill[i as usize];
            entries[*slot] = (si as u32, p as u32);
            *slot += 1;
        }
    }
    let mut out = vec![0.0f32; l * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, o)| {
        for &(si, p) in &entries[offsets[i]..offsets[i + 1]] {
            let s = &sets[si as usize];
            let p = p as usize;
            let r = p / s.k;
            axpy(o, s.coef[p], &s.src[r * d..(r + 1) * d]);
        }
    });
    out
}

/// `out[i] = Σ_{(r, j): idx[r, j] = i} coef[r, j]`, `[l]`.
pub fn scatter_sum(l: usize, idx: &[i64], coef: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; l];
    for (&i, &c) in idx.iter().zip(coef) {
        out[i as usize] += c;
    }
    out
}

/// One Adam update of `p` in place with gradient `g` and moments `m`, `v` (updated in place),
/// in one pass on all threads: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p − step · m / (√v / √bc₂ + ε)` — the tensor path's operations, in its order.
#[allow(clippy::too_many_arguments)]
pub fn adam_update(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    (b1, b2, eps): (f32, f32, f32),
    step: f32,
    sqrt_bc2: f32,
) {
    const CHUNK: usize = 1 << 14;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = *m * b1 + g * (1.0 - b1);
                *v = *v * b2 + g * g * (1.0 - b2);
                let u = *m / (v.sqrt() / sqrt_bc2 + eps);
                *p -= u * step;
            }
        });
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `x · y`, in eight lanes (vectorisable; the order of additions is fixed).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xc, xr) = x.split_at(x.len() / 8 * 8);
    let (yc, yr) = y.split_at(xc.len());
    for (a, b) in xc.chunks_exact(8).zip(yc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_kernels_equal_their_definitions() {
        let (l, d, n, k) = (7usize, 5usize, 4usize, 3usize);
        let w: Vec<f32> = (0..l * d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let idx: Vec<i64> = (0..n * k).map(|p| ((p * 5 + 1) % l) as i64).collect();
        let coef: Vec<f32> = (0..n * k).map(|p| (p as f32 - 4.0) / 7.0).collect();
        let src: Vec<f32> = (0..n * d).map(|p| ((p * 13 % 9) as f32 - 4.0) / 5.0).collect();
        let init: Vec<f32> = (0..n * d).map(|p| p as f32 / 10.0).collect();

        let combined = rows_combine(&w, d, &idx, &coef, k, Some(&init));
        let dots = rows_dot(&w, d, &idx, &src, k);
        let scattered = scatter_rows(l, d, &[Scatter { idx: &idx, coef: &coef, k, src: &src }]);
        let sums = scatter_sum(l, &idx, &coef);
        let mut want_comb = init.clone();
        let mut want_scat = vec![0.0f32; l * d];
        let mut want_sums = vec![0.0f32; l];
        for r in 0..n {
            for j in 0..k {
                let (i, c) = (idx[r * k + j] as usize, coef[r * k + j]);
                let mut dot = 0.0f32;
                for c2 in 0..d {
                    want_comb[r * d + c2] += c * w[i * d + c2];
                    want_scat[i * d + c2] += c * src[r * d + c2];
                    dot += src[r * d + c2] * w[i * d + c2];
                }
                assert!((dots[r * k + j] - dot).abs() < 1e-5, "dot {r},{j}");
                want_sums[i] += c;
            }
        }
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&combined, &want_comb));
        assert!(close(&scattered, &want_scat));
        assert!(close(&sums, &want_sums));
        // Two sets add up.
        let twice = scatter_rows(
            l,
            d,
            &[Scatter { idx: &idx, coef: &coef, k, src: &src }, Scatter { idx: &idx, coef: &coef, k, src: &src }],
        );
        assert!(close(&twice, &want_scat.iter().map(|v| 2.0 * v).collect::<Vec<_>>()));
    }
}
