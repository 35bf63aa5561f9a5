//! The patched burn-flex (`vendor/burn-flex/PATCHED.md`) copies a permuted tensor that does
//! not collapse to 2D block by block, and applies a binary operation to permuted and
//! broadcast operands row by row (each on all threads when large): the values are the
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
