//! What several command-line tests share: a toy model on disk, a toy run's TOML, and the
//! arguments of `resa train-sae` on the sparsify fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use resa::qwen2::safetensors_io::StoredDtype;
use resa::qwen2::{Qwen2Config, Qwen2ForCausalLM};
use resa::toy::world::{self, ToyWorld};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A tiny random model (seed 1) with the toy world's tokenizer in `dir`.
pub fn toy_model(dir: &Path) {
    let cfg = Qwen2Config { vocab_size: world::vocab_size(), ..Qwen2Config::tiny() };
    Qwen2ForCausalLM::<burn::backend::Flex>::random(&cfg, 1, &Default::default(), burn::tensor::DType::F32)
        .save_pretrained(dir, StoredDtype::F32)
        .expect("save model");
    world::write_tokenizer(dir).expect("tokenizer");
}

/// A toy run in `dir`: a tiny model (`dir/model`), toy problems split as `splits`
/// (`dir/data/train.jsonl` trains), and `dir/run.toml` writing to `dir/run`: Stage I trains
/// an SAE at `layers.1` from scratch for `sae_steps` steps, LoRA has rank 4 and alpha 16,
/// and `lora` and `stage2` (TOML lines) end those tables. Returns the TOML's path.
pub fn toy_run(dir: &Path, splits: [usize; 3], sae_steps: u64, lora: &str, stage2: &str) -> PathBuf {
    let model = dir.join("model");
    toy_model(&model);
    ToyWorld::default().write_splits(dir.join("data"), splits).expect("data");
    let config = format!(
        r#"
out = "{out}"
[source]
model = "{model}"
[target]
model = "{model}"
[data]
trigger = "{data}"
elicitation = "{data}"
template = "{template}"
ctx_len = 48
[sae]
mode = "scratch"
hookpoint = "layers.1"
num_latents = 128
k = 8
batch_size = 4
max_steps = {sae_steps}
[lora]
r = 4
alpha = 16
{lora}
[stage2]
lr = 1e-3
{stage2}
"#,
        out = dir.join("run").display(),
        model = model.display(),
        data = dir.join("data/train.jsonl").display(),
        template = world::TOY_TEMPLATE.replace('\n', "\\n"),
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, config).expect("config");
    path
}

/// `resa train-sae` on the sparsify fixtures (the tiny tied model, two hookpoints
/// fine-tuned from the fixtures' initial SAEs with Adam), writing to `out`.
pub fn train_sae_fixture_args(out: &Path) -> Vec<String> {
    let model = root().join("crates/resa-qwen2/tests/fixtures/tied_gqa_f32_old");
    let fixtures = root().join("crates/resa-sae/tests/fixtures");
    [
        "train-sae",
        "--model",
        s(&model),
        "--token-ids",
        s(&fixtures.join("input_ids.json")),
        "--hookpoint",
        "layers.1",
        "--hookpoint",
        "layers.2.mlp",
        "--mode",
        "finetune",
        "--init",
        s(&fixtures.join("adam/init")),
        "--optimizer",
        "adam",
        "--lr-warmup-steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        s(out),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}
