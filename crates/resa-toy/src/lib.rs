#![doc = include_str!("../README.md")]

pub mod error;

pub use error::{Error, Result};

pub mod compare;
pub mod demo;
pub mod model;
pub mod paper;
pub mod tina;
pub mod world;
