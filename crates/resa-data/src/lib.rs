#![doc = include_str!("../README.md")]

pub mod chunk;
pub mod error;
pub mod hub;
pub mod reader;
pub mod registry;
pub mod template;

pub use chunk::{ChunkOptions, ChunkStats, Chunks, chunk_texts};
pub use error::{Error, Result};
#[cfg(feature = "hub")]
pub use hub::{HubOptions, load_dataset_with};
pub use hub::{Source, load_dataset};
pub use reader::{QaRow, ReadOptions, ReadReport, read_qa, read_qa_files};
pub use template::{MATH_EVAL_PROMPT, REFERENCE_SYSTEM_PROMPT, Template, math_eval_message};
