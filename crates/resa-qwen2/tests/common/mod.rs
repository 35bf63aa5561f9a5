//! Helpers shared by the integration tests: fixture paths and tensor comparison.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Tensor, backend::Backend};
use resa_qwen2::safetensors_io::SafetensorsReader;

pub const CASES: [&str; 3] = ["tied_gqa_f32_old", "untied_mqa_bf16_sharded_new", "untied_mha_f16_old"];

pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(case)
}

pub fn reference(case: &str) -> SafetensorsReader {
    SafetensorsReader::open_file(fixture(case).join("reference.safetensors")).expect("reference.safetensors")
}

pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data")
}

/// Largest absolute difference; panics with context when above `tol`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let d = (a - b).abs();
        // Written so that a NaN difference counts as the worst.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let worse = !(d <= worst);
        if worse {
            worst = d;
            at = i;
        }
    }
    assert!(worst <= tol, "{what}: max |diff| {worst} at {at} (got {}, want {}) > {tol}", got[at], want[at]);
}
