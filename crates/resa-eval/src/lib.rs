#![doc = include_str!("../README.md")]

pub mod bench;
pub mod error;
pub mod extract;
pub mod grade;
pub mod math;

pub use bench::{MATH_BENCHMARKS, Problem, benchmark_file, load_problems};
pub use error::{Error, Result};
pub use grade::{Graded, extract_choice, grade_choice, grade_math};
