//! Helpers shared by the trainer tests: the tiny fixture model with fresh adapters, the
//! fixture SAE, random chunks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::tensor::DType;
use rand::{Rng, SeedableRng, rngs::StdRng};
use resa_lora::LoraConfig;
use resa_qwen2::{CheckedHookpoint, Hookpoint, Qwen2ForCausalLM};
use resa_sae::SparseCoder;

pub type B = burn::backend::Flex;
pub type AD = Autodiff<B>;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn model(lora: &LoraConfig) -> Qwen2ForCausalLM<AD> {
    let mut m = Qwen2ForCausalLM::<AD>::from_pretrained(
        root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old"),
        &Default::default(),
        DType::F32,
    )
    .expect("model");
    resa_lora::attach(&mut m, lora, 0).expect("attach");
    resa_lora::trainable(m)
}

/// `layers.N` of the fixture model, checked against its depth.
pub fn at(layer: usize) -> CheckedHookpoint {
    let cfg = resa_qwen2::Qwen2Config::from_file(root().join("resa-qwen2/tests/fixtures/tied_gqa_f32_old/config.json"))
        .expect("config");
    Hookpoint::Residual(layer).within(cfg.num_hidden_layers).expect("in range")
}

pub fn sae() -> SparseCoder<AD> {
    SparseCoder::load(root().join("resa-sae/tests/fixtures/signum/final/layers.1"), &Default::default()).expect("sae")
}

pub fn chunks(n: usize, len: usize) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(3);
    (0..n).map(|_| (0..len).map(|_| rng.random_range(3..96)).collect()).collect()
}

pub fn lora() -> LoraConfig {
    LoraConfig::new(4, 16.0, 0.05, &resa_lora::ALL_LINEAR)
}

/// Every value of an adapter folder's tensors, in key order.
pub fn adapter_values(dir: &Path) -> Vec<f32> {
    let r = resa_qwen2::safetensors_io::SafetensorsReader::open_file(dir.join("adapter_model.safetensors"))
        .expect("adapter");
    let mut keys: Vec<String> = r.keys().map(str::to_string).collect();
    keys.sort();
    keys.iter().flat_map(|k| r.read_f32_any(k).expect("tensor").0).collect()
}

/// The gradient of every adapter matrix (A then B of each adapted linear, in model order) in
/// `grads`; empty where no gradient reached it.
pub fn adapter_grads(
    model: &Qwen2ForCausalLM<AD>,
    grads: &<AD as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<Vec<f32>> {
    model
        .linears()
        .into_iter()
        .filter_map(|(_, l)| l.adapter.as_ref())
        .flat_map(|ad| [&ad.a, &ad.b])
        .map(|p| p.val().grad(grads).map(|g| g.into_data().iter::<f32>().collect()).unwrap_or_default())
        .collect()
}

/// The decoder layer a module name (`model.layers.N.…`) belongs to.
pub fn layer_of(name: &str) -> usize {
    name.strip_prefix("model.layers.").and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok()).expect("layer")
}

/// [`model`] whose adapters above `layer` have moved (`B` drawn, seed 1) while those at and
/// below it are still zero, trainable.
pub fn model_moved_above(lora: &LoraConfig, layer: usize) -> Qwen2ForCausalLM<AD> {
    use burn::module::Param;
    use burn::tensor::{Distribution, Tensor, backend::Backend};
    let device = Default::default();
    let mut m = model(lora);
    <AD as Backend>::seed(&device, 1);
    for (name, lin) in m.linears_mut() {
        if let Some(ad) = lin.adapter.as_mut()
            && layer_of(&name) > layer
        {
            let shape = ad.b.val().dims();
            ad.b = Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), &device));
        }
    }
    resa_lora::trainable(m)
}
