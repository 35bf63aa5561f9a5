//! The patched burn-flex (`vendor/burn-flex/PATCHED.md`) copies a permuted tensor that does
//! not collapse to 2D block by block (on all threads when large): the values land where the
//! element-by-element definition puts them.

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
