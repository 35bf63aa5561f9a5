#![doc = include_str!("../README.md")]

pub mod bench;
pub mod error;
pub mod extract;
pub mod grade;
pub mod math;
pub mod normalize;
pub mod report;
pub mod runner;
pub mod task;
pub mod verify;

pub use bench::{MATH_BENCHMARKS, Problem, benchmark_file, load_problems};
pub use error::{Error, Result};
pub use extract::{Extracted, Target};
pub use grade::{Explained, Graded, GradingConfig, extract_choice, grade, grade_choice, grade_explained, grade_math};
pub use report::{BenchScore, Report, bench_columns, compare_markdown};
pub use runner::{CompletionRecord, EvalConfig, EvalFiles, Progress, evaluate, read_completions, sample_seed, score};
pub use task::{EvalItem, Grader, TASKS, Task, TaskSources, TaskSpec, load_gpqa, load_task, task_spec};
