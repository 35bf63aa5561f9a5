//! Reasoning features: small SAEs on two layers of the toy model, the latents active only at
//! `<think>` and `</think>` of the R1 system prompt, and a Gaussian mixture over layers.
//!
//! `cargo run --release --example features`

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use resa::features::{GmmOptions, R1_SYSTEM_PROMPT, analyze, extract, summary};
use resa::qwen2::{Hookpoint, Qwen2ForCausalLM, Tokenizer};
use resa::sae::{SaeInit, SparseCoder, Stage1Options, train_saes_with};
use resa::toy::world::ToyWorld;

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let device = Default::default();
    let model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &device, DType::F32)?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    // CoT-free trigger data: the answer alone inside the think tags.
    let chunks = ToyWorld::default().cot_free_chunks(tokenizer.inner(), 1000, 64)?;
    let hookpoints = vec![Hookpoint::Residual(2), Hookpoint::Residual(4)];
    let out = std::env::temp_dir().join("resa-example-features");
    let options = Stage1Options {
        hookpoints: hookpoints.clone(),
        init: SaeInit::Scratch { num_latents: Some(512), expansion_factor: 64, k: 16, seed: 0 },
        batch_size: 8,
        max_steps: Some(60),
        out: out.join("saes"),
        ..Stage1Options::default()
    };
    train_saes_with::<Autodiff<Flex>>(&model, &chunks, &options, &mut |_| {})?;
    let saes = hookpoints
        .iter()
        .map(|h| Ok((*h, SparseCoder::<Flex>::load(out.join("saes").join(h.to_string()), &device)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ids = tokenizer.encode(R1_SYSTEM_PROMPT, true)?;
    let think = tokenizer.token_to_id("<think>").ok_or_else(|| anyhow::anyhow!("no <think>"))?;
    let end = tokenizer.token_to_id("</think>").ok_or_else(|| anyhow::anyhow!("no </think>"))?;
    let features = extract(&model, &saes, &ids, think, end, 0.0)?.layers;
    let analysis = analyze(features, None, &GmmOptions { components: 2, ..GmmOptions::default() }, &out)?;
    print!("{}", summary(&analysis));
    Ok(())
}
