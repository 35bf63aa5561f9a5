//! Stage II: SAE-guided SFT. A frozen SAE is spliced into the toy model at `layers.3`; LoRA
//! adapters learn to make the spliced model match the unmodified one (KL). Saves a PEFT
//! adapter. (Uses a freshly initialised SAE so the example stands alone; Stage I's
//! `train_sae` example makes a trained one.)
//!
//! `cargo run --release --example stage2`

use burn::backend::{Autodiff, Flex};
use burn::tensor::DType;
use resa::lora::LoraConfig;
use resa::qwen2::{Hookpoint, Qwen2ForCausalLM, Tokenizer};
use resa::sae::{SaeConfig, SparseCoder};
use resa::toy::world::ToyWorld;
use resa::tune::{SaeGrad, SaeTuning, TuneConfig, train_adapters};

type AD = Autodiff<Flex>;

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let device = Default::default();
    let tokenizer = Tokenizer::from_dir(&dir)?;
    // CoT-free trigger data: the answer alone inside the think tags.
    let chunks = ToyWorld::default().cot_free_chunks(tokenizer.inner(), 300, 64)?;

    let mut model = Qwen2ForCausalLM::<AD>::from_pretrained(&dir, &device, DType::F32)?;
    let lora = LoraConfig::new(8, 32.0, 0.05, &resa::lora::ALL_LINEAR);
    resa::lora::attach(&mut model, &lora, 0)?;
    let model = resa::lora::trainable(model); // only A and B train
    let sae = SparseCoder::<AD>::random(SaeConfig::new(model.config().hidden_size, 512, 16), 0, &device)?;
    let at = "layers.3".parse::<Hookpoint>()?.within(model.config().num_hidden_layers)?;
    let objective = SaeTuning::new(&sae, at, SaeGrad::Detach);
    let out = std::env::temp_dir().join("resa-example-stage2");
    let cfg = TuneConfig { lr: 1e-3, max_steps: Some(30), batch_size: 2, save_every: 30, out, ..TuneConfig::default() };
    let (_, report) = train_adapters(model, &lora, &objective, &chunks, &cfg, &mut |m| {
        if m.step % 10 == 0 {
            println!("step {}/{}: KL {:.4}", m.step, m.total, m.loss);
        }
        true
    })?;
    println!("PEFT adapter: {}", report.adapter.display());
    Ok(())
}
