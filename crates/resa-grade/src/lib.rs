#![doc = include_str!("../README.md")]

pub mod error;
pub mod extract;
pub mod grade;
pub mod math;
pub mod normalize;
pub mod verify;

pub use error::{Error, Result};
pub use extract::{Extracted, Target};
pub use grade::{Explained, Graded, GradingConfig, extract_choice, grade, grade_choice, grade_explained, grade_math};
