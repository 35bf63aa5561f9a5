//! Merge and export: attach a LoRA adapter, save it as a PEFT folder, merge it into the
//! weights and write a Hugging Face checkpoint that transformers and vLLM load.
//!
//! `cargo run --release --example merge`

use burn::backend::Flex;
use burn::tensor::DType;
use resa::lora::LoraConfig;
use resa::qwen2::Qwen2ForCausalLM;
use resa::qwen2::safetensors_io::StoredDtype;

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let out = std::env::temp_dir().join("resa-example-merge");
    let mut model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &Default::default(), DType::F32)?;
    let lora = LoraConfig::new(4, 16.0, 0.0, &["q_proj", "v_proj"]);
    resa::lora::attach(&mut model, &lora, 0)?;
    resa::lora::save_adapter(&model, &lora, out.join("adapter"))?; // adapter_config.json + adapter_model.safetensors
    resa::lora::save_merged(model, out.join("merged"), StoredDtype::F32, Some(&dir))?; // config.json, safetensors, tokenizer
    let merged = Qwen2ForCausalLM::<Flex>::from_pretrained(out.join("merged"), &Default::default(), DType::F32)?;
    println!("merged checkpoint with {} layers in {}", merged.config().num_hidden_layers, out.display());
    Ok(())
}
