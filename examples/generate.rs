//! Load a model (the built-in toy model) and generate: the chat template, then greedy and
//! sampled decoding with the paper's settings.
//!
//! `cargo run --release --example generate`

use burn::backend::Flex;
use burn::tensor::DType;
use resa::qwen2::{ChatMessage, GenerationConfig, Qwen2ForCausalLM, Sampling, Tokenizer, generate};

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &Default::default(), DType::F32)?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    // The toy chat template writes `Q: …\nA: <think>` as the generation prompt.
    let prompt = tokenizer.encode_chat(&[ChatMessage::user("What is (2+3)*4?")], true)?;
    let eos = tokenizer.eos_token_id().into_iter().collect::<Vec<_>>();
    let greedy = GenerationConfig::greedy(64, eos.clone());
    let sampled = GenerationConfig {
        sampling: Sampling::Sample { temperature: 0.6, top_p: 0.95, top_k: None },
        seed: 1,
        ..greedy.clone()
    };
    for (name, cfg) in [("greedy", &greedy), ("sampled", &sampled)] {
        let out = generate(&model, std::slice::from_ref(&prompt), cfg)?;
        println!("{name}: <think>{}", tokenizer.decode(&out[0].ids, false)?);
    }
    Ok(())
}
