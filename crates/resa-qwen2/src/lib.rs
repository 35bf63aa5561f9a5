#![doc = include_str!("../README.md")]

pub mod config;
pub mod decoder;
pub mod dropout;
pub mod error;
pub mod generate;
pub mod hooks;
pub mod hub;
pub mod load;
pub mod model;
pub mod safetensors_io;
pub mod tokenizer;

pub use config::{HfConfig, Qwen2Config};
pub use decoder::{BatchDecoder, DecodeRequest};
pub use dropout::{host_values, on_host};
pub use error::SpliceError;
pub use error::{Error, Result};
pub use generate::{
    FinishReason, Generated, GeneratedText, GenerationConfig, PREFILL_CHUNK, Sampling, generate, generate_seeded,
    generate_text, generate_with_prefill_chunk, stop_token_ids,
};
pub use hooks::{CheckedHookpoint, Hookpoint, Hooks, Splice, SpliceGrad, SpliceHook};
pub use model::{
    AdapterMode, ForwardInput, ForwardOutput, KvCache, LayerInputs, Linear, Logits, LowRank, Qwen2ForCausalLM,
};
pub use tokenizer::{ChatMessage, Tokenizer};

/// Re-export of the burn version this crate is built on.
pub use burn;
