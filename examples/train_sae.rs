//! Stage I: train a TopK SAE from scratch on the toy model's `layers.3` activations over
//! CoT-free toy problems, and save it in sparsify's folder format.
//!
//! `cargo run --release --example train_sae`

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use resa::qwen2::{Qwen2ForCausalLM, Tokenizer};
use resa::sae::{SaeInit, SparseCoder, Stage1Options, train_saes_with};
use resa::toy::world::ToyWorld;

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &Default::default(), DType::F32)?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    // CoT-free trigger data: the answer alone inside the think tags.
    let chunks = ToyWorld::default().cot_free_chunks(tokenizer.inner(), 1000, 64)?;
    let out = std::env::temp_dir().join("resa-example-sae");
    let options = Stage1Options {
        hookpoints: vec!["layers.3".parse()?],
        init: SaeInit::Scratch { num_latents: Some(512), expansion_factor: 64, k: 16, seed: 0 },
        batch_size: 8,
        max_steps: Some(60),
        out: out.clone(),
        ..Stage1Options::default()
    };
    train_saes_with::<Autodiff<Flex>>(&model, &chunks, &options, &mut |p| {
        if p.step % 20 == 0 || p.step == p.total {
            println!("step {}/{}: fvu {:.4}", p.step, p.total, p.metrics[0].1.fvu);
        }
    })?;
    let sae = SparseCoder::<Flex>::load(out.join("layers.3"), &Default::default())?;
    println!(
        "SAE in sparsify format: {} ({} latents, k {})",
        out.join("layers.3").display(),
        sae.num_latents(),
        sae.config().k
    );
    Ok(())
}
