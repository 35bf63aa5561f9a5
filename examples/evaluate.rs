//! Evaluate: Pass@1 of the toy model on 50 held-out toy problems with the paper's sampling
//! settings; completions, report.json and report.md land in a folder (rerunning resumes).
//! For the paper's benchmarks use `resa_eval::load_task("math500", &sources)`.
//!
//! `cargo run --release --example evaluate`

use burn::backend::Flex;
use burn::tensor::DType;
use resa::eval::{EvalConfig, evaluate};
use resa::qwen2::{Qwen2ForCausalLM, Tokenizer};

fn main() -> anyhow::Result<()> {
    let dir = resa::toy::model::default_dir();
    let model = Qwen2ForCausalLM::<Flex>::from_pretrained(&dir, &Default::default(), DType::F32)?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let cfg = EvalConfig { max_new_tokens: 96, batch_size: 25, ..EvalConfig::default() };
    let out = std::env::temp_dir().join("resa-example-eval");
    let report = evaluate(
        &model,
        &tokenizer,
        &[resa::toy::world::World::Arith.test_task(0, 50)],
        &cfg,
        &out,
        "toy model",
        |p| {
            if p.done == p.total {
                println!("{}: {}/{} right", p.bench, p.correct, p.total);
            }
        },
    )?;
    print!("{}", report.to_markdown());
    Ok(())
}
