//! # resa
//!
//! SAE-Tuning — the method of "Resa: Transparent Reasoning Models via SAEs" — in Rust.
//! This package is the facade over the workspace's crates and holds the `resa`
//! command-line program.
//!
//! - [`qwen2`]: the Qwen2 transformer, Hugging Face checkpoint loading, hookpoints,
//!   generation, tokenizer and chat template.
//! - [`data`]: question–answer readers, the reference templates, and tokenised chunks as
//!   sparsify makes them.
//! - [`sae`]: TopK sparse autoencoders in sparsify's format and Stage I training.
//! - [`lora`]: LoRA adapters in PEFT's format, merging.
//! - [`tune`]: Stage II (SAE-guided SFT), its objectives, the CoT-free SFT baseline,
//!   full-parameter training.
//! - [`mod@pipeline`]: one run from its TOML file — the configuration checked before any
//!   work, Stage I → Stage II → adapter → merged model (`resa tune`).
//! - [`eval`]: the paper's benchmarks and Pass@1, on this project's generator or on any
//!   OpenAI-compatible server (vLLM, SGLang, TGI, `resa serve`).
//! - [`serve`]: an OpenAI-compatible HTTP server over the generator (`resa serve`).
//! - [`publish`]: how every output is published (one rename, never half-written).
//! - [`mod@grade`]: math-answer grading (math-verify 0.9 ported; no tensors).
//! - [`features`]: reasoning features per layer, the layer mixture, figures.
//! - [`toy`]: the toy reasoning world, the toy model, the toy Tina, `resa demo` and the toy
//!   paper.
//! - [`experiments`]: the paper's experiments as data (`configs/`), `resa reproduce`.
//! - [`mod@bench`]: the fixed workloads of `resa bench` / `cargo xtask bench`.
//!
//! See the repository README for the pipeline and `docs/` for the design.

pub use resa_bench as bench;
pub use resa_data as data;
pub use resa_eval as eval;
pub use resa_experiments as experiments;
pub use resa_features as features;
pub use resa_grade as grade;
pub use resa_lora as lora;
pub use resa_pipeline as pipeline;
pub use resa_publish as publish;
pub use resa_qwen2 as qwen2;
pub use resa_sae as sae;
pub use resa_serve as serve;
pub use resa_toy as toy;
pub use resa_tune as tune;

pub mod device;
