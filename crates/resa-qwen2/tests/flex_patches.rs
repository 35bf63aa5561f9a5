//! The patched burn-flex (`vendor/burn-flex/PATCHED.md`) copies a permuted tensor that does
//! not collapse to 2D block by block, and applies a binary operation to permuted and
//! broadcast operands row by row, maps contiguous operands in pieces and copies a transposed
//! matrix in blocks of rows (each on all threads when large): the values are the
//! element-by-element definition's.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};

#[test]
fn permuted_tensors_copy_to_their_places() {
    // Small (one thread) and the attention's shape at the toy model's training batch (threaded).
    for [a, b, c, d] in [[2usize, 3, 4, 5], [4, 128, 4, 32]] {
        let n = a * b * c * d;
        let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let t = Tensor::<Flex, 4>::from_data(TensorData::new(data.clone(), [a, b, c, d]), &Default::default());
        // [a, b, c, d] → [a, c, b, d], made contiguous by the reshape.
        let got = t.swap_dims(1, 2).reshape([n]).into_data().to_vec::<f32>().expect("f32");
        let mut want = Vec::with_capacity(n);
        for i in 0..a {
            for k in 0..c {
                for j in 0..b {
                    for l in 0..d {
                        want.push(data[((i * b + j) * c + k) * d + l]);
                    }
                }
            }
        }
        assert_eq!(got, want, "{:?}", [a, b, c, d]);
    }
}

#[test]
fn binary_operations_on_permuted_and_broadcast_operands_are_elementwise() {
    let dev = Default::default();
    for [a, b, c, d] in [[2usize, 3, 4, 5], [4, 128, 4, 32]] {
        let n = a * b * c * d;
        let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5 - 7.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 89) as f32 * 0.25 + 1.0).collect();
        let w: Vec<f32> = (0..d).map(|i| i as f32 - 3.5).collect();
        let xt = Tensor::<Flex, 4>::from_data(TensorData::new(x.clone(), [a, b, c, d]), &dev).swap_dims(1, 2);
        let yt = Tensor::<Flex, 4>::from_data(TensorData::new(y.clone(), [a, b, c, d]), &dev).swap_dims(1, 2);
        let wt = Tensor::<Flex, 1>::from_data(TensorData::new(w.clone(), [d]), &dev).reshape([1, 1, 1, d]);
        // [a, c, b, d] in row-major order: element (i, k, j, l) of the swapped tensors.
        let at = |v: &[f32], i: usize, k: usize, j: usize, l: usize| v[((i * b + j) * c + k) * d + l];
        let read = |t: Tensor<Flex, 4>| t.reshape([n]).into_data().to_vec::<f32>().expect("f32");
        let (prod, quot, scaled) = (read(xt.clone() * yt.clone()), read(xt.clone() / yt), read(xt * wt));
        let mut i_out = 0;
        for i in 0..a {
            for k in 0..c {
                for j in 0..b {
                    for l in 0..d {
                        let (xv, yv) = (at(&x, i, k, j, l), at(&y, i, k, j, l));
                        assert_eq!(prod[i_out], xv * yv);
                        assert_eq!(quot[i_out], xv / yv);
                        assert_eq!(scaled[i_out], xv * w[l]);
                        i_out += 1;
                    }
                }
            }
        }
    }
}

/// Element-wise operations on contiguous tensors (in place when the left operand is held
/// nowhere else, into a new buffer when it is) run on all threads from 64 Ki elements:
/// small, just above and well above that size, the values are the definition's and a shared
/// operand is left as it was.
#[test]
fn contiguous_element_wise_operations_are_elementwise_at_every_size() {
    let dev = Default::default();
    for n in [1000usize, 64 * 1024 + 7, 300_000] {
        let x: Vec<f32> = (0..n).map(|i| (i % 101) as f32 * 0.37 - 11.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 53) as f32 * 0.11 + 0.5).collect();
        let t = |v: &[f32]| Tensor::<Flex, 2>::from_data(TensorData::new(v.to_vec(), [n / 8, 8]), &dev);
        let m = n / 8 * 8;
        let vals = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().expect("f32");
        let want = |f: &dyn Fn(f32, f32) -> f32| (0..m).map(|i| f(x[i], y[i])).collect::<Vec<f32>>();
        let (xs, ys) = (&x[..m], &y[..m]);
        // Unique left operand: in place (the SIMD kernels for + − × ÷, the generic loop for max).
        assert_eq!(vals(t(xs) + t(ys)), want(&|a, b| a + b), "{n}: add");
        assert_eq!(vals(t(xs) - t(ys)), want(&|a, b| a - b), "{n}: sub");
        assert_eq!(vals(t(xs) * t(ys)), want(&|a, b| a * b), "{n}: mul");
        assert_eq!(vals(t(xs) / t(ys)), want(&|a, b| a / b), "{n}: div");
        assert_eq!(vals(t(xs).max_pair(t(ys))), want(&|a, b| a.max(b)), "{n}: max");
        // Shared left operand: a new buffer; the operand keeps its values.
        let shared = t(xs);
        assert_eq!(vals(shared.clone() * t(ys)), want(&|a, b| a * b), "{n}: shared mul");
        assert_eq!(vals(shared.clone().max_pair(t(ys))), want(&|a, b| a.max(b)), "{n}: shared max");
        assert_eq!(vals(shared.clone().mul_scalar(1.5)), want(&|a, _| a * 1.5), "{n}: shared scalar");
        let row = Tensor::<Flex, 2>::from_data(TensorData::new(y[..8].to_vec(), [1, 8]), &dev);
        let broadcast: Vec<f32> = (0..m).map(|i| x[i] + y[i % 8]).collect();
        assert_eq!(vals(shared.clone() + row), broadcast, "{n}: shared row broadcast");
        assert_eq!(vals(shared.clone().add_scalar(2.0)), want(&|a, _| a + 2.0), "{n}: shared add scalar");
        assert_eq!(vals(shared), xs.to_vec(), "{n}: the shared operand is unchanged");
        // Unique operand with a scalar: in place.
        assert_eq!(vals(t(xs).mul_scalar(-0.5)), want(&|a, _| a * -0.5), "{n}: scalar");
    }
}

/// A transposed matrix made contiguous lands element by element where the definition puts
/// it: small (one thread), and large with a row count that is not a multiple of the blocks
/// the copy hands out to threads.
#[test]
fn transposed_matrices_copy_to_their_places() {
    let dev = Default::default();
    for (rows, cols) in [(37usize, 53usize), (300, 701)] {
        let data: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = Tensor::<Flex, 2>::from_data(TensorData::new(data.clone(), [rows, cols]), &dev);
        // [rows, cols] → [cols, rows], made contiguous by the reshape.
        let got = t.transpose().reshape([rows * cols]).into_data().to_vec::<f32>().expect("f32");
        let want: Vec<f32> = (0..cols).flat_map(|c| (0..rows).map(move |r| (r * cols + c) as f32)).collect();
        assert_eq!(got, want, "{rows} × {cols}");
    }
}
