//! Capture hookpoint activations (what Stage I trains on and what `resa forward` writes):
//! the residual stream after layer 3 and the MLP output of layer 2.
//!
//! `cargo run --release --example capture`

use burn::backend::Flex;
use burn::tensor::{DType, Int, Tensor, TensorData};
use resa::qwen2::{ForwardInput, Hookpoint, Hooks, Logits, Qwen2ForCausalLM, Tokenizer};

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &Default::default(), DType::F32)?;
    let ids = Tokenizer::from_dir(&dir)?.encode("Q: What is 2+3?\nA: <think> 2+3=5 </think>", true)?;
    let input = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), [1, ids.len()]),
        &Default::default(),
    );
    // Names meet the model once: `within` checks the layer against its depth.
    let layers = model.config().num_hidden_layers;
    let points =
        ["layers.3".parse::<Hookpoint>()?.within(layers)?, "layers.2.mlp".parse::<Hookpoint>()?.within(layers)?];
    // Logits::None: the forward stops after the deepest hooked layer.
    let out = model.forward(ForwardInput::new(input).with_logits(Logits::None), &Hooks::capture(points), None)?;
    for (hookpoint, act) in &out.captured {
        let norm: f32 = act.clone().powi_scalar(2).sum().sqrt().into_scalar();
        println!("{hookpoint}: shape {:?}, Frobenius norm {norm:.3}", act.dims());
    }
    Ok(())
}
