#![doc = include_str!("../README.md")]

pub mod adapter;
pub mod config;
pub mod error;

pub use adapter::{
    attach, base_dtype, load_adapter, merge, merge_and_unload, remove, save_adapter, save_merged, select_modules,
    trainable, unmerge,
};
pub use config::{ALL_LINEAR, Layers, LoraConfig, Targets};
pub use error::{Error, Result};
