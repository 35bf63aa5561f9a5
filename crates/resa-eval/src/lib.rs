#![doc = include_str!("../README.md")]

pub mod extract;
pub mod grade;
pub mod math;

pub use grade::{Graded, extract_choice, grade_choice, grade_math};
