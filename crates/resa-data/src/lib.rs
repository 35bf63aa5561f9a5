#![doc = include_str!("../README.md")]

pub mod chunk;
pub mod error;
pub mod reader;
pub mod template;

pub use chunk::{ChunkOptions, ChunkStats, Chunks, chunk_texts};
pub use error::{Error, Result};
pub use reader::{QaRow, ReadOptions, ReadReport, read_qa};
pub use template::{REFERENCE_SYSTEM_PROMPT, Template};
