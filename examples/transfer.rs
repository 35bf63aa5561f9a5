//! Reasoning as an adapter: a LoRA adapter trained on one model attached to another model of
//! the same shapes (the paper's transfer experiment). Here: an adapter made on the toy model
//! is attached to a second, differently initialised model of the same architecture.
//!
//! `cargo run --release --example transfer`

use burn::backend::Flex;
use burn::module::Param;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData};
use resa::lora::LoraConfig;
use resa::qwen2::{ForwardInput, Hooks, Qwen2ForCausalLM};

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let device = Default::default();
    let out = std::env::temp_dir().join("resa-example-transfer");
    // An adapter (in practice `stage2/adapter` of a `resa tune` run; here B is filled with
    // small random values so that it changes the model).
    let mut a = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &device, DType::F32)?;
    let lora = LoraConfig::new(8, 32.0, 0.0, &resa::lora::ALL_LINEAR);
    resa::lora::attach(&mut a, &lora, 7)?;
    for (_, linear) in a.linears_mut() {
        if let Some(ad) = linear.adapter.as_mut() {
            ad.b = Param::from_tensor(Tensor::random(ad.b.dims(), Distribution::Normal(0.0, 0.02), &device));
        }
    }
    resa::lora::save_adapter(&a, &lora, out.join("adapter"))?;

    // Another model with the same shapes.
    let mut b = Qwen2ForCausalLM::<Flex>::random(a.config(), 42, &device, DType::F32);
    let plain = b.clone();
    let cfg = resa::lora::load_adapter(&mut b, out.join("adapter"))?;
    println!("attached r {} on {:?}", cfg.r, cfg.target_modules);
    let input = Tensor::<Flex, 2, Int>::from_data(TensorData::new(vec![1i64, 40, 41, 42], [1, 4]), &device);
    let logits = |m: &Qwen2ForCausalLM<Flex>| -> anyhow::Result<Tensor<Flex, 3>> {
        m.forward(ForwardInput::new(input.clone()), &Hooks::default(), None)?
            .logits
            .ok_or_else(|| anyhow::anyhow!("no logits"))
    };
    let diff: f32 = (logits(&b)? - logits(&plain)?).abs().max().into_scalar();
    println!("max |logit change| from the adapter: {diff:.2e}");
    Ok(())
}
