//! Helpers shared by the resa-sae tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use resa_qwen2::safetensors_io::SafetensorsReader;

pub type B = burn::backend::Flex;
pub type AD = burn::backend::Autodiff<B>;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read<Bk: Backend, const D: usize>(r: &SafetensorsReader, key: &str, device: &Bk::Device) -> Tensor<Bk, D> {
    let (v, s) = r.read_f32_any(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    Tensor::from_data(TensorData::new(v, s), device)
}

pub fn read_int<Bk: Backend, const D: usize>(
    r: &SafetensorsReader,
    key: &str,
    device: &Bk::Device,
) -> Tensor<Bk, D, Int> {
    let (v, s) = r.read_i64_any(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    Tensor::from_data(TensorData::new(v, s), device)
}

pub fn to_vec<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data")
}

pub fn max_abs_diff<Bk: Backend, const D: usize>(a: Tensor<Bk, D>, b: Tensor<Bk, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    to_vec(a).iter().zip(to_vec(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[track_caller]
pub fn assert_close<Bk: Backend, const D: usize>(what: &str, a: Tensor<Bk, D>, b: Tensor<Bk, D>, tol: f32) {
    let d = max_abs_diff(a, b);
    assert!(d <= tol, "{what}: max |diff| = {d:e} > {tol:e}");
}
